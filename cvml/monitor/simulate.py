"""Seeded synthetic production traffic: what `cvml serve` would log for a stream of
`/v1/cv/rewrite` requests, built from the synthetic CV generator — for the monitor's tests
and `benchmarks/monitor_power.py`.

    pool = request_pool(seed=0)
    entries, feedback = simulate(pool, 1000, SCENARIOS["language_shift"], window, seed=1)
    write_log(log_location, entries, feedback)

A `Traffic` says how the stream looks: which roles (and so industries) its people and job
ads come from, the share of requests written in German, Spanish or French, how much longer
the inputs are, and what the model does (fabrication, leaks, errors, timeouts) and how
users answer (accept, rate, edit). Outputs are the generator's targets (a fabricated one
gets a claim the inputs lack); the checks and the guard's outcome are set as serve would
log them, so the monitor reads exactly what production leaves — through `RequestLog`,
which redacts every text.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from random import Random
from typing import Any

from cvml.serve.checks import INPUTS, input_figures
from cvml.serve.requestlog import LogEntry, RequestLog
from cvml.tiny.synth import generate_records
from cvml.windows import Window

_FLUSH_EVERY = 2000
# People (and the jobs they tailor to) of health care, trades, logistics and retail.
SHIFTED_ROLES = ("Registered Nurse", "Electrician", "Warehouse Supervisor", "Retail Store Manager",
                 "Logistics Coordinator", "Teacher")  # fmt: skip


@dataclass(frozen=True)
class Traffic:
    """How a stream of requests looks (defaults: an ordinary day)."""

    roles: tuple[str, ...] | None = None  # only people of these job titles
    foreign_share: float = 0.0  # share of requests in German, Spanish or French
    length_factor: int = 1  # inputs this many pasted together
    fabrication_rate: float = 0.03
    pii_leak_rate: float = 0.003
    harmful_rate: float = 0.003
    error_rate: float = 0.004
    timeout_rate: float = 0.002
    feedback_share: float = 0.3
    acceptance: float = 0.65
    edit_share: float = 0.3  # of accepted outputs, edited before being kept
    variants: tuple[tuple[str, float], ...] = (("a", 1.0),)
    model_version: str = "sim@1"


SCENARIOS: dict[str, Traffic] = {
    "no_drift": Traffic(),
    "industry_shift": Traffic(roles=SHIFTED_ROLES),
    "language_shift": Traffic(foreign_share=0.3),
    "longer_inputs": Traffic(length_factor=2),
    "regressed_model": Traffic(fabrication_rate=0.06),
}


def request_pool(seed: int = 0, n_people: int = 1500) -> list[dict[str, Any]]:
    """The generator's well-formed rows: what users send (planted PII included)."""
    pool = []
    for row in generate_records(n_people, seed):
        ok = isinstance(row.get("source_text"), str) and isinstance(row.get("target"), str)
        if ok and row.get("task") in ("rewrite_bullet", "tailor_section", "summary") and row["source_text"].strip():
            if row["task"] != "tailor_section" or row.get("job_description"):
                pool.append(row)
    return pool


def simulate(
    pool: list[dict[str, Any]], n: int, traffic: Traffic, window: Window, seed: int
) -> tuple[list[LogEntry], list[dict[str, Any]]]:
    """`n` logged requests spread over `window`, and the feedback users sent on some.

    Returns:
        (entries in time order, feedback as {"request_id", "accepted", "rating", "edited_text"})
    """
    rng = Random(seed)
    people = [r for r in pool if traffic.roles is None or r["meta"].get("role") in traffic.roles]
    span = window.length.total_seconds()
    times = sorted(window.start + timedelta(seconds=rng.random() * span) for _ in range(n))
    entries, feedback = [], []
    names, weights = zip(*traffic.variants)
    for i, at in enumerate(times):
        row = rng.choice(people)
        source, job, target = row["source_text"], row.get("job_description"), row["target"]
        if rng.random() < traffic.foreign_share:
            source, job, target = _foreign(rng, row["task"])
        for _ in range(traffic.length_factor - 1):
            other = rng.choice([r for r in people[:400] if r["task"] == row["task"]] or [row])
            source, job = _longer(source, other["source_text"]), _longer(job, other.get("job_description"))
        request_id = f"sim-{seed}-{i:06d}"
        entry = _entry(rng, traffic, request_id, at, row, source, job, target, rng.choices(names, weights)[0])
        entries.append(entry)
        if entry.status == 200 and rng.random() < traffic.feedback_share:
            accepted = rng.random() < traffic.acceptance
            edited = None
            if accepted and rng.random() < traffic.edit_share:
                edited = target.rstrip(". ") + ", delivered on schedule."
            feedback.append({"request_id": request_id, "accepted": accepted,
                             "rating": rng.choice((4, 5)) if accepted else rng.choice((1, 2, 3)), "edited_text": edited})  # fmt: skip
    return entries, feedback


def training_split(pool: list[dict[str, Any]], n: int, seed: int) -> list[dict[str, Any]]:
    """`n` rows of the pool as `cvml curate` leaves them: PII redacted (one scope per row)."""
    from cvml.safety.pii import PiiRedactor, Placeholders

    redactor, rng = PiiRedactor(), Random(seed)
    rows = []
    for row in rng.sample(pool, min(n, len(pool))):
        scope = Placeholders()
        texts = {key: row.get(key) for key in ("source_text", "job_description", "target")}
        rows.append({**row, **{key: None if text is None else redactor.redact(text, scope)[0]
                               for key, text in texts.items()}})  # fmt: skip
    return rows


def stand_in_model(folder: str | Path, train_file: str | Path, rows: list[dict[str, Any]]) -> Path:
    """A model folder holding what the monitor reads of a fine-tuned model — the manifest
    naming its train split, its vocabulary, its tokenizer — and no weights (the monitor
    never loads them). Tests and the power benchmark register it like a real one."""
    import json

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from cvml.data.vocabulary import Vocabulary
    from cvml.manifest import build_manifest, write_manifest

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    texts = [t for r in rows for t in (r["source_text"], r.get("job_description"), r["target"]) if t]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1024, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    tokenizer.train_from_iterator(texts, trainer)
    tokenizer.save(str(out / "tokenizer.json"))
    Vocabulary.from_texts(texts).write(out)
    (out / "config.json").write_text(json.dumps({"stand_in": True}) + "\n", encoding="utf-8")
    write_manifest(out, build_manifest("finetune", inputs={"train": train_file}))
    return out


def write_jsonl(path: str | Path, rows: list[dict[str, Any]]) -> Path:
    import json

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return out


def write_log(
    location: str | Path | None, entries: list[LogEntry], feedback: list[dict[str, Any]], log_text: str = "redacted"
) -> None:
    """Record the entries (redacted by the log, like serve's) and then the feedback."""
    with RequestLog(location, log_text=log_text) as log:
        for i, entry in enumerate(entries, 1):
            log.record(entry)
            if i % _FLUSH_EVERY == 0:  # the log drops what waits beyond its queue's bound
                log.flush()
        log.flush()
        for item in feedback:
            log.feedback(item["request_id"], accepted=item["accepted"], rating=item["rating"],
                         edited_text=item["edited_text"])  # fmt: skip


def _entry(rng: Random, traffic: Traffic, request_id: str, at: datetime, row: dict[str, Any], source: str,
           job: str | None, target: str, variant: str) -> LogEntry:  # fmt: skip
    common = dict(
        request_id=request_id, endpoint="/v1/cv/rewrite", at=at, variant=variant, experiment="default",
        model_ref=traffic.model_version, model_version=traffic.model_version, user_id=row["group"],
        task=row["task"], input_text=source if job is None else f"{source}\n{job}",
        prompt_tokens=40 + len(source) // 4 + len(job or "") // 4, queue_s=0.001,
    )  # fmt: skip
    draw = rng.random()
    if draw < traffic.timeout_rate:
        return LogEntry(status=504, finish_reason="deadline", error="the request passed its deadline of 30 s",
                        e2e_s=30.0, **common)  # fmt: skip
    if draw < traffic.timeout_rate + traffic.error_rate:
        return LogEntry(status=500, finish_reason="error", error="engine error", e2e_s=0.2, **common)
    fabricated = rng.random() < traffic.fabrication_rate
    leaked = rng.random() < traffic.pii_leak_rate
    harmful = rng.random() < traffic.harmful_rate
    output = target
    if fabricated:
        output = f"{target.rstrip('. ')}, saving {rng.randint(13, 97)} hours a week."
    reasons = [name for name, hit in (("fabrication", fabricated), ("pii_leak", leaked),
                                      ("protected_attributes", harmful)) if hit]  # fmt: skip
    action = "passed"
    if reasons:
        action = "retried" if rng.random() < 0.7 else "blocked"
    final = action == "blocked"  # a retried request's last output passed
    completion = max(4, len(output) // 4)
    e2e = 0.05 + completion * rng.lognormvariate(-4.0, 0.25)
    checks = {
        "pii_leak": {"flagged": leaked and final, "types": ["EMAIL"] if leaked and final else [],
                     "n_leaks": int(leaked and final)},
        "fabrication": {"flagged": fabricated and final, "claims": [], "n_claims": 2},
        "protected_attributes": {"flagged": harmful and final, "categories": [], "n": 0, "findings": {}},
        "abusive": {"flagged": False, "categories": [], "n": 0, "findings": {}},
        "injection": {"flagged": False, "categories": [], "n": 0, "findings": {}},
        "guard": {"action": action, "attempts": 1 + (action != "passed") * 2, "reasons": reasons,
                  "grounding": "strict"},
        INPUTS: input_figures(source, job),
    }  # fmt: skip
    return LogEntry(
        status=200, finish_reason="stop", output_text=output, completion_tokens=completion, e2e_s=e2e,
        ttft_s=0.02 + rng.random() * 0.03, itl_mean_s=e2e / completion, pii_leak=leaked and final,
        fabrication=fabricated and final, checks=checks, **common,
    )  # fmt: skip


def _longer(text: str | None, more: str | None) -> str | None:
    if text is None or more is None:
        return text
    lines = more.split("\n")
    return text + "\n" + "\n".join(lines[1:] if len(lines) > 1 else lines)


# --------------------------------------------------------------------- other languages

_FOREIGN: dict[str, dict[str, list[str]]] = {
    "de": {
        "weak": ["Zuständig für", "Mitarbeit bei", "Verantwortlich für", "Unterstützung bei"],
        "verb": ["Leitete", "Entwickelte", "Verbesserte", "Automatisierte", "Betreute", "Organisierte"],
        "object": ["ein Team von {n} Mitarbeitenden", "die wöchentliche Berichterstattung",
                   "den Freigabeprozess der Abteilung", "die Einarbeitung von {n} neuen Kollegen",
                   "die Lagerverwaltung am Standort", "die Terminplanung für {n} Kunden"],
        "tool": ["mit Excel", "mit SAP", "mit Python", "gemeinsam mit dem Vertrieb", "im Schichtbetrieb"],
        "job": ["{employer} sucht eine engagierte Fachkraft ({city}, hybrid). Ihre Aufgaben: Planung, Steuerung "
                "und Berichterstattung. Anforderungen: Erfahrung mit Excel und SAP, Teamfähigkeit. "
                "Mindestens {n} Jahre Berufserfahrung."],
        "header": ["Berufserfahrung | {employer} | seit 2019"],
    },
    "es": {
        "weak": ["Encargado de", "Colaboré en", "Responsable de", "Apoyo en"],
        "verb": ["Dirigí", "Desarrollé", "Mejoré", "Automaticé", "Coordiné", "Gestioné"],
        "object": ["un equipo de {n} personas", "los informes mensuales del departamento",
                   "el proceso de facturación", "la formación de {n} empleados nuevos",
                   "la gestión del almacén", "la atención a {n} clientes diarios"],
        "tool": ["con Excel", "con SAP", "con Python", "junto al equipo comercial", "en turnos rotativos"],
        "job": ["{employer} busca un profesional comprometido ({city}, híbrido). Funciones: planificación, "
                "seguimiento y elaboración de informes. Requisitos: experiencia con Excel y SAP, trabajo en equipo. "
                "Al menos {n} años de experiencia."],
        "header": ["Experiencia profesional | {employer} | desde 2019"],
    },
    "fr": {
        "weak": ["Chargé de", "Participation à", "Responsable de", "Soutien à"],
        "verb": ["Dirigé", "Développé", "Amélioré", "Automatisé", "Coordonné", "Géré"],
        "object": ["une équipe de {n} personnes", "les rapports mensuels du service",
                   "le processus de facturation", "la formation de {n} nouveaux salariés",
                   "la gestion de l'entrepôt", "le suivi de {n} clients chaque jour"],
        "tool": ["avec Excel", "avec SAP", "avec Python", "avec l'équipe commerciale", "en horaires décalés"],
        "job": ["{employer} recrute un profil motivé ({city}, hybride). Missions : planification, suivi et "
                "rédaction de rapports. Profil : maîtrise d'Excel et de SAP, esprit d'équipe. "
                "Au moins {n} ans d'expérience."],
        "header": ["Expérience professionnelle | {employer} | depuis 2019"],
    },
}  # fmt: skip
_EMPLOYERS = ("Nordlicht Logistik", "Grupo Alameda", "Maison Verdier", "Helvetia Pflege", "Soluciones Ibéricas")
_CITIES = ("Berlin", "Madrid", "Lyon", "Wien", "Sevilla", "Bordeaux")


def _foreign(rng: Random, task: str) -> tuple[str, str | None, str]:
    """A request of `task` written in German, Spanish or French: (text, job description, output)."""
    bank = _FOREIGN[rng.choice(sorted(_FOREIGN))]
    fill = dict(n=rng.randint(3, 40), employer=rng.choice(_EMPLOYERS), city=rng.choice(_CITIES))

    def bullet(strong: bool) -> str:
        obj = rng.choice(bank["object"]).format(**fill)
        start = rng.choice(bank["verb"] if strong else bank["weak"])
        return f"{start} {obj} {rng.choice(bank['tool'])}"

    if task == "rewrite_bullet":
        return bullet(False), None, bullet(True)
    if task == "tailor_section":
        header = rng.choice(bank["header"]).format(**fill)
        lines = [f"- {bullet(True)}" for _ in range(rng.randint(2, 4))]
        section = "\n".join([header, *lines])
        return section, rng.choice(bank["job"]).format(**fill), section
    facts = [bullet(True) for _ in range(2)]
    return "\n".join(facts), None, ". ".join(facts) + "."

