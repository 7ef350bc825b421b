"""The LightningModules of the published methods, end to end."""
