"""Resources: one module per outside system, each a `dg.ConfigurableResource` with small public methods."""
