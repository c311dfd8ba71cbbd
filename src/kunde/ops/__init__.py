"""Operations: health, metrics, request ids, access logs (and later load shedding)."""
