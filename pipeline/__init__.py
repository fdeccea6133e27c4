"""clipfeat.pipeline."""
