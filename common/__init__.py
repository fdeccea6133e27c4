"""clipfeat.common: conventions every layer shares (the error base, R2R view geometry, the connectivity reader). A leaf: imports nothing of clipfeat."""
