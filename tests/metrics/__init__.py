"""The test metrics, against independent references and under DDP."""
