"""What a person could do about the daemon's state: the seed's "recomendaciones automáticas"
(low cache hit rate, backlog, failures), read from the checks of a /health report, in Spanish
or English. /health carries them in `reports.language`; the daily report words them in its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from facturasd.constants import GROUP_QUEUES
from facturasd.wording import Language

# Below this many look-ups a hit rate says nothing yet.
HIT_RATE_MIN_LOOKUPS = 20

_SAID: dict[Language, dict[str, str]] = {
    "es": {
        "CACHE-HIT-RATE": (
            "La caché de Alegra respondió solo el {rate:.0f} % de las consultas (mínimo "
            "{threshold:.0f} %): alargue cache.ttl o use Redis (cache.backend) para que la "
            "caché sobreviva a los reinicios."
        ),
        "CACHE-DOWN": (
            "El servidor de la caché no responde: las consultas van a Alegra y gastan su cuota; "
            "revise Redis ({url})."
        ),
        "BACKLOG": (
            "La cola {queue} tiene {ready} trabajos esperando (el más antiguo hace {age}): si su "
            "servicio responde, suba workers.{group}.concurrency."
        ),
        "DEAD-JOBS": (
            "{dead} trabajo(s) de {queue} se dieron por perdidos: véalos con "
            "`facturasd jobs --state dead` y, corregida la causa, reintente con "
            "`facturasd jobs --queue {queue} --retry-dead`."
        ),
        "FAILING": "El trabajo de {name} está fallando ({error}): revise el registro del servicio.",
        "AUTHORITY": (
            "{name} no responde: las facturas esperan en FALLBACK y se consultarán solas cuando "
            "vuelva; nada que hacer salvo que dure horas."
        ),
        "ALEGRA": "Alegra: {output}",
        "DISK": "Queda poco disco ({free} MiB libres): libere espacio junto a la base de datos.",
        "FOLDERS": "No se puede escribir en una carpeta: {output}",
        "SCHEDULE": "La tarea programada {task} falló: {detail}",
        "WORKERS": "El grupo de trabajadores {name} no trabaja: {output}",
    },
    "en": {
        "CACHE-HIT-RATE": (
            "The Alegra cache answered only {rate:.0f} % of look-ups (minimum {threshold:.0f} %): "
            "lengthen cache.ttl or use Redis (cache.backend) so the cache outlives restarts."
        ),
        "CACHE-DOWN": (
            "The cache's server does not answer: look-ups go to Alegra and spend its quota; "
            "check Redis ({url})."
        ),
        "BACKLOG": (
            "Queue {queue} has {ready} jobs waiting (the oldest for {age}): if its service "
            "answers, raise workers.{group}.concurrency."
        ),
        "DEAD-JOBS": (
            "{dead} job(s) of {queue} were given up: see them with `facturasd jobs --state dead` "
            "and, once the cause is fixed, run them again with "
            "`facturasd jobs --queue {queue} --retry-dead`."
        ),
        "FAILING": "Work of {name} is failing ({error}): read the service's log.",
        "AUTHORITY": (
            "{name} does not answer: invoices wait in FALLBACK and are asked again by themselves "
            "when it is back; nothing to do unless it lasts hours."
        ),
        "ALEGRA": "Alegra: {output}",
        "DISK": "Disk space is low ({free} MiB free): free space beside the database.",
        "FOLDERS": "A folder cannot be written: {output}",
        "SCHEDULE": "Scheduled task {task} failed: {detail}",
        "WORKERS": "Worker pool {name} is not working: {output}",
    },
}


@dataclass(frozen=True)
class Recommendation:
    code: str
    message: str


Checks = Mapping[str, Sequence[Mapping[str, Any]]]


def advisor(hit_rate_min: float, lang: Language) -> Callable[[Checks], list[Recommendation]]:
    """The recommendations a /health report's `checks` call for, in `lang`; `hit_rate_min`
    is `alerts.cache_hit_rate_min` (a share: 0.70)."""
    said = _SAID[lang]
    groups = {
        queue.value: group.value for group, queues in GROUP_QUEUES.items() for queue in queues
    }

    def advise(checks: Checks) -> list[Recommendation]:
        return [
            Recommendation(code, said[code].format(**values))
            for code, values in _found(checks, hit_rate_min, groups)
        ]

    return advise


def worded(checks: Checks, hit_rate_min: float) -> Callable[[Language], list[str]]:
    """A report's recommendations: what `checks` call for, in the language it is asked in."""
    return lambda lang: [found.message for found in advisor(hit_rate_min, lang)(checks)]


def _found(
    checks: Checks, hit_rate_min: float, groups: Mapping[str, str]
) -> Iterator[tuple[str, dict[str, Any]]]:
    for key, items in checks.items():
        group, _, name = key.partition(":")
        for item in items:
            status = item.get("status")
            component = str(item.get("componentId") or name)
            if key == "cache:alegra":
                metrics = item.get("metrics") or {}
                lookups = int(metrics.get("hits", 0)) + int(metrics.get("misses", 0))
                rate = float(metrics.get("hit_rate", 100.0))
                if lookups >= HIT_RATE_MIN_LOOKUPS and rate < hit_rate_min * 100:
                    yield "CACHE-HIT-RATE", {"rate": rate, "threshold": hit_rate_min * 100}
                if status != "pass":
                    yield "CACHE-DOWN", {"url": metrics.get("backend", "redis")}
            elif key == "queues:depth":
                if status != "pass" and item.get("observedValue", 0):
                    yield (
                        "BACKLOG",
                        {
                            "queue": component,
                            "ready": item["observedValue"],
                            "age": _age(float(item.get("oldestAgeSeconds", 0))),
                            "group": groups.get(component, "…"),
                        },
                    )
                if dead := (item.get("counts") or {}).get("dead", 0):
                    yield "DEAD-JOBS", {"queue": component, "dead": dead}
            elif status == "pass":
                continue
            elif key == "workers:failures":
                yield "FAILING", {"name": component, "error": item.get("output", "")}
            elif key == "workers:alive":
                yield "WORKERS", {"name": component, "output": item.get("output", status)}
            elif group == "authorities":
                yield "AUTHORITY", {"name": name.upper()}
            elif group == "alegra":
                yield "ALEGRA", {"output": item.get("output", status)}
            elif group == "disk":
                yield "DISK", {"free": int(item.get("observedValue", 0)) >> 20}
            elif group == "folders":
                yield "FOLDERS", {"output": item.get("output", component)}
            elif group == "scheduler":
                yield "SCHEDULE", {"task": component, "detail": item.get("output", "")}


def _age(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"
