"""Energy and carbon per request: measured or estimated Wh, grid intensity, renewable share, SCI."""
