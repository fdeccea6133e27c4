"""clipfeat.apps: programs that use every layer (the demo)."""
