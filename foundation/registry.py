"""The names the layers share: asset groups (one per warehouse schema) and asset keys."""

import dagster as dg

STAGING = "staging"
FULFILLMENT = "fulfillment"
ANALYTICS = "analytics"


def staging_key(name: str) -> dg.AssetKey:
    """The key of a staging asset, which is also its table `staging.<name>`."""
    return dg.AssetKey([STAGING, name])


def fulfillment_key(name: str) -> dg.AssetKey:
    """The key of a fulfillment asset, which is also its table `fulfillment.<name>`."""
    return dg.AssetKey([FULFILLMENT, name])


def analytics_key(name: str) -> dg.AssetKey:
    """The key of an analytics asset, which is also its table `analytics.<name>`."""
    return dg.AssetKey([ANALYTICS, name])
