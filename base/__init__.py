"""What every layer shares: error classes, the settings schema, the log protocol, the data folder.

Standard library only, and nothing here imports another package of ours: this is the bottom
of the layer order in docs/DESIGN.md. Kept empty so the hook pays only for what it uses.
"""
