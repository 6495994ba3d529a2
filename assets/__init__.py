"""Pipeline stages as software-defined assets, one sub-package per warehouse layer."""
