"""Sources of real images for the real-model pipeline."""
