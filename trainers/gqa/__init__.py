"""clipfeat.trainers.gqa: GQA on Visual Genome stores."""
