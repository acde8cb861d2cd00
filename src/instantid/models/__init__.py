"""Model room: the face adapter checkpoint, IdentityNet routing, Hub resolution, tiny test models."""
