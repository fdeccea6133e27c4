"""clipfeat.trainers."""
