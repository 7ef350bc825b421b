"""Brain encoders, ridge and contrastive losses."""
