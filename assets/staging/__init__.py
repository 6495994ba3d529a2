"""Staging: the order system's data, validated and typed, under TPC-H's own table and column names."""
