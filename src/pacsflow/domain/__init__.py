"""Pure workflow rules: identity, orders, matching. Stdlib only, no I/O."""
