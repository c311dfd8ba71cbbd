from kunde.access.routes import create_key, list_keys, me, revoke_key
from kunde.features import Feature

FEATURE = Feature(name="access", routes=[me, create_key, list_keys, revoke_key])
