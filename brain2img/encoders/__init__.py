"""Plain ``nn.Module`` encoders (no Lightning, no I/O beyond loading local weights)."""
