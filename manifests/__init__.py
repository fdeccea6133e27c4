"""clipfeat.manifests."""
