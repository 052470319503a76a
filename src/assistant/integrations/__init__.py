"""Adapters to other frameworks. Each lives in its own module and imports its framework only
when that module is imported: `import assistant` never loads them."""
