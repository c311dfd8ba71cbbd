"""The vault: field encryption, blind indexes, master-key rotation."""

from __future__ import annotations

import base64
import os

import pytest

from kunde.core.errors import KundeError
from kunde.kernel import Kernel
from kunde.privacy.vault import Vault


async def test_field_roundtrip_and_shred(kernel: Kernel) -> None:
    v = kernel.vault
    async with kernel.db.transaction() as uow:
        blob = await v.encrypt_field(uow, "subj", "ada@example.org")
        assert b"ada@" not in blob
        assert await v.decrypt_field(uow, "subj", blob) == "ada@example.org"
        await v.shred(uow, "subj", "test")
        assert await v.decrypt_field(uow, "subj", blob) is None


async def test_blind_index_normalises_and_is_keyed(kernel: Kernel) -> None:
    v = kernel.vault
    assert v.blind_index("email", " Ada@Example.ORG ") == v.blind_index("email", "ada@example.org")
    assert v.blind_index("email", "ada@example.org") != v.blind_index("phone", "ada@example.org")
    assert v.blind_index("phone", "+49 (30) 1234") == v.blind_index("phone", "+49301234")
    other = Vault(os.urandom(32))
    # A different master key cannot unwrap the stored blind-index key.
    with pytest.raises(KundeError, match="unknown master key"):
        async with kernel.db.transaction() as uow:
            await other.load_system_keys(uow)


async def test_master_key_rotation_rewraps_without_touching_data(kernel: Kernel) -> None:
    v = kernel.vault
    async with kernel.db.transaction() as uow:
        blob = await v.encrypt_field(uow, "subj-r", "secret value")
    index_before = v.blind_index("email", "x@y.z")
    new_master = os.urandom(32)
    async with kernel.db.transaction() as uow:
        assert await v.rotate_master_key(uow, new_master) >= 2
    # A fresh process knowing only the new key reads the old data and the same index.
    fresh = Vault(new_master)
    async with kernel.db.transaction() as uow:
        await fresh.load_system_keys(uow)
        assert await fresh.decrypt_field(uow, "subj-r", blob) == "secret value"
    assert fresh.blind_index("email", "x@y.z") == index_before
    assert base64.b64encode(new_master)
