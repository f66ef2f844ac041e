"""The only layer that does I/O: sockets, tasks, clocks. See app.py (routes) and session.py (driver)."""
