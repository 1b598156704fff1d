"""The GAN algorithm: losses, the alternating phases and the EMA of G. Knows nothing of Ray."""
