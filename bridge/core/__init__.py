"""The pure core: decisions without I/O. Every function here is given `now`."""
