"""The pure core: windows, limits, reservations, health, candidates and strategies.

Nothing here does I/O, reads the clock or imports asyncio; time and randomness come in
as arguments.
"""
