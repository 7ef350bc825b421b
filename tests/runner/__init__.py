"""The CLI, its configs, the registry and the callbacks."""
