"""What booking looks up in one Alegra account, through the cache: the supplier's contact, the
chart (taxes, retentions, expense accounts) and items; the warm-up that fills the cache ahead
of the day's bookings; and what a change in Alegra (our own write, or a webhook) forgets.

Keys in the cache (scope = the company, or "default"): `contacts:<identification>` → the
contact {id, name, identification}, with `contacts:id:<id>` → the identification, so an edit
known only by the contact's id forgets it; `items:<name>` and `items:id:<id>` likewise;
`taxes:all`, `retentions:all`, `accounts:all` the whole lists.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from typing import Any

import anyio

from facturasd.alegra.bill import Chart, Unbookable
from facturasd.alegra.cache import AlegraCache
from facturasd.alegra.client import AlegraClient
from facturasd.checks.base import fold
from facturasd.checks.identity import tax_id
from facturasd.formats.model import Document

log = logging.getLogger(__name__)

ALL = "all"
# A webhook's subject names Alegra's object ("client" is any contact), then the cache's kind.
OBJECTS = {"client": "contacts", "contact": "contacts", "item": "items"}


class Directory:
    def __init__(self, client: AlegraClient, cache: AlegraCache, scope: str):
        self.client = client
        self.cache = cache
        self.scope = scope
        # One look-up at a time per entry: two bookings of a new supplier at once make one
        # look-up (and one contact), not two.
        self._locks: defaultdict[str, anyio.Lock] = defaultdict(anyio.Lock)

    async def provider(self, document: Document) -> str:
        """The Alegra contact id of the document's issuer: from the cache, else looked up by
        identification (an exact match among the results), else created."""
        key = tax_id(document.issuer.tax_id or "")
        if not key:
            raise Unbookable("the document names no issuer tax id: its provider is unknown")
        async with self._locks[f"contacts:{key}"]:
            return await self._provider(document, key)

    async def _provider(self, document: Document, key: str) -> str:
        issuer = document.issuer
        cached = await self.cache.get(self.scope, "contacts", key)
        if cached is not None:
            return str(cached["id"])
        found = await self.client.get("/contacts", identification=key, type="provider")
        matches = [
            contact
            for contact in found or []
            if tax_id(str(contact.get("identification") or "")) == key
        ]
        if matches:
            contact = matches[0]
        else:
            contact = await self.client.post(
                "/contacts",
                {"name": issuer.name or key, "identification": key, "type": ["provider"]},
            )
            log.info(
                "alegra: provider %s (%s) created as contact %s", issuer.name, key, contact["id"]
            )
        await self._remember_contact(contact, key)
        return str(contact["id"])

    async def _remember_contact(self, contact: dict[str, Any], key: str) -> None:
        entry = {"id": str(contact["id"]), "name": contact.get("name"), "identification": key}
        await self.cache.set(self.scope, "contacts", key, entry)
        await self.cache.set(self.scope, "contacts", f"id:{entry['id']}", key)

    async def chart(self) -> Chart:
        """The account's taxes, retentions and chart of accounts."""
        return Chart(
            taxes=await self._list("taxes", "/taxes"),
            retentions=await self._list("retentions", "/retentions"),
            categories=await self._list("accounts", "/categories"),
        )

    async def _list(self, kind: str, path: str) -> list[dict[str, Any]]:
        async with self._locks[kind]:
            cached = await self.cache.get(self.scope, kind, ALL)
            if cached is not None:
                return list(cached)
            found = await self.client.get(path)
            if not isinstance(found, list):
                found = []
            await self.cache.set(self.scope, kind, ALL, found)
            return found

    async def forget_chart(self) -> int:
        """The taxes, retentions and accounts forgotten: read again from Alegra next time
        (after Alegra refused a bill, or a rate or account was missing)."""
        return await self.cache.invalidate_pattern(
            f"^{re.escape(self.scope)}:(taxes|retentions|accounts):"
        )

    async def items(self, names: list[str]) -> dict[str, str]:
        """The item id of each name (`bill.item_names`), created when Alegra has none."""
        ids: dict[str, str] = {}
        for name in dict.fromkeys(names):
            # One look-up at a time per item, as per provider: two bookings of a new item
            # make one item.
            async with self._locks[f"items:{fold(name)}"]:
                ids[name] = await self._item(name)
        return ids

    async def _item(self, name: str) -> str:
        key = fold(name)
        cached = await self.cache.get(self.scope, "items", key)
        if cached is not None:
            return str(cached["id"])
        found = await self.client.get("/items", query=name)
        item = next((i for i in found or [] if fold(str(i.get("name") or "")) == key), None)
        if item is None:
            item = await self.client.post("/items", {"name": name, "price": 0})
        await self._remember_item(item, key)
        return str(item["id"])

    async def _remember_item(self, item: dict[str, Any], key: str) -> None:
        await self.cache.set(self.scope, "items", key, {"id": str(item["id"]), "name": key})
        await self.cache.set(self.scope, "items", f"id:{item['id']}", key)

    async def warm_up(self) -> dict[str, int]:
        """Providers, items, taxes, retentions and accounts into the cache (every page), so
        the day's bookings spend Alegra's requests on bills. Returns how many of each."""
        return {**await self.warm_contacts(), **await self.warm_items()}

    async def warm_contacts(self) -> dict[str, int]:
        """Every provider into the cache (the scheduler's 01:00 task)."""
        loaded = 0
        async for page in self.client.pages("/contacts", type="provider"):
            for contact in page:
                key = tax_id(str(contact.get("identification") or ""))
                if key:
                    await self._remember_contact(contact, key)
                    loaded += 1
        return {"contacts": loaded}

    async def warm_items(self) -> dict[str, int]:
        """Every item, and the taxes, retentions and accounts, into the cache (01:30)."""
        loaded = {"items": 0}
        async for page in self.client.pages("/items"):
            for item in page:
                if name := fold(str(item.get("name") or "")):
                    await self._remember_item(item, name)
                    loaded["items"] += 1
        for kind, path in (
            ("taxes", "/taxes"),
            ("retentions", "/retentions"),
            ("accounts", "/categories"),
        ):
            await self.cache.invalidate(self.scope, kind, ALL)
            loaded[kind] = len(await self._list(kind, path))
        return loaded

    async def forget(self, subject: str, obj: dict[str, Any]) -> int:
        """What Alegra says changed (`edit-client`, `delete-item`, …, with the object): its
        entries forgotten, by id and by what it is looked up by. Returns how many."""
        kind = OBJECTS.get(subject.rsplit("-", 1)[-1])
        if kind is None or obj.get("id") is None:
            return 0
        keys = {f"id:{obj['id']}"}
        by_id = await self.cache.get(self.scope, kind, f"id:{obj['id']}")
        if isinstance(by_id, str):
            keys.add(by_id)
        if kind == "contacts" and obj.get("identification"):
            keys.add(tax_id(str(obj["identification"])))
        if kind == "items" and obj.get("name"):
            keys.add(fold(str(obj["name"])))
        forgotten = 0
        for key in keys:
            forgotten += await self.cache.invalidate(self.scope, kind, key)
        return forgotten
