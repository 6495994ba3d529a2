"""Fulfillment: the order-to-cash steps that act on the store's outside systems, exactly once."""
