"""clipfeat.apps: programs that use every layer (the demo: `python -m clipfeat.apps.demo`).

Nothing in features, manifests, pipeline or trainers imports this package, so it may import
all of them without turning an arrow of the dependency graph around."""
