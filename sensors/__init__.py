"""Sensors decide *when* to run (landing-zone, failure and automation sensors); assets decide *what*."""
