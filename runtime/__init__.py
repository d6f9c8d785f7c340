"""crisp's embedded low-level OCI runtime: bundle → running process.

Nothing in this package knows about CRI; it speaks OCI runtime-spec terms only.
"""
