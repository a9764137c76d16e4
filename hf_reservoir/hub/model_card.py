"""Model cards generated from what training measured (never typed by hand).

Training writes ``results.json`` (convergence summary, scores, data statistics, parameter counts)
and ``convergence.png``; [`write_model_card`] renders them through the one template,
``hf_reservoir/hub/model_card_template.md`` (installed with the package), with ``huggingface_hub``'s
``ModelCard``/``ModelCardData``/``EvalResult``, so the ``model-index`` metadata is valid.
"""

from __future__ import annotations

import os
import platform
import shutil
from dataclasses import dataclass, field

import torch
from transformers.utils import CONFIG_NAME

from ..evaluation.metrics import format_value
from ..utils.run_folder import CONVERGENCE_PLOT, CORPUS_STATS_FILE, RESULTS_FILE, read_run_file

TEMPLATE_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model_card_template.md")
DEBIAN_CORPUS_NAME = "hf-reservoir Debian de-en (LibreOffice help + UI, Ding)"
EXAMPLE_SOURCES = {"de": "Wählen Sie Extras - Optionen.", "en": "Choose Tools - Options."}


def debian_corpus_name(corpus_stats: dict) -> str:
    """The card's name of a built Debian corpus: its pair and sources (``stats.json``)."""
    pair = corpus_stats.get("pair", "de-en")
    sources = "LibreOffice help + UI, Ding" if "ding" in corpus_stats.get("kept", {}) else "LibreOffice help + UI"
    return f"hf-reservoir Debian {pair} ({sources})"


def example_source(results: dict) -> str:
    """A source sentence for the card's usage example: a fixed one for German and English, else the first
    validation sentence of the run's data folder in the source language (empty when there is none)."""
    source_lang = results.get("source_lang", "de")
    if source_lang in EXAMPLE_SOURCES:
        return EXAMPLE_SOURCES[source_lang]
    path = os.path.join(str((results.get("data_source") or {}).get("name") or ""), f"validation.{source_lang}")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as handle:
            return handle.readline().strip()
    return ""


@dataclass
class ModelCardFacts:
    """Everything a card states, gathered from a finished run."""

    repo_id: str
    config: dict
    results: dict
    training: dict = field(default_factory=dict)
    corpus_stats: dict | None = None
    dataset_name: str = DEBIAN_CORPUS_NAME
    hardware: str = ""
    plot_file: str = CONVERGENCE_PLOT
    example_source: str = EXAMPLE_SOURCES["de"]

    @classmethod
    def from_run(cls, run_dir: str, model_dir: str, repo_id: str) -> ModelCardFacts:
        """Read ``results.json`` from ``run_dir`` and ``config.json`` from ``model_dir``."""
        results, config = read_run_file(run_dir, RESULTS_FILE), read_run_file(model_dir, CONFIG_NAME)
        corpus_stats = results.get("corpus_stats")
        data = results.get("data_source", {})
        name = debian_corpus_name(corpus_stats) if corpus_stats else data.get("name", "unknown")
        return cls(
            repo_id=repo_id,
            config=config,
            results=results,
            training=results.get("training", {}),
            corpus_stats=corpus_stats,
            dataset_name=name,
            hardware=results.get("hardware", ""),
            example_source=example_source(results),
        )


def describe_hardware() -> str:
    """The machine a run used, for the card: CPU threads or GPU name, and the torch version."""
    if torch.cuda.is_available():
        device = torch.cuda.get_device_name(0)
    else:
        device = f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"
    return f"{device}, torch {torch.__version__}"


def _minutes(seconds) -> str:
    return "n/a" if seconds is None else f"{seconds / 60:.1f} min ({seconds:.0f} s)"


def _score_rows_and_results(facts: ModelCardFacts) -> tuple[list[dict], list]:
    """The card's score table rows and the ``model-index`` results, from ``results.json``."""
    from huggingface_hub import EvalResult

    results, rows, eval_results = facts.results, [], []
    for split in ("validation", "test"):
        scores = results.get(split) or {}
        if "bleu" not in scores:
            continue
        rows.append({"split": split, "bleu": format_value(scores["bleu"]), "chrf": format_value(scores.get("chrf"))})
        eval_results += [
            EvalResult(
                task_type="translation",
                task_name="Translation",
                dataset_type=facts.dataset_name,
                dataset_name=facts.dataset_name,
                dataset_split=split,
                metric_type=metric,
                metric_name=metric.upper() if metric == "bleu" else "chrF",
                metric_value=round(float(scores[metric]), 2),
            )
            for metric in ("bleu", "chrf")
            if metric in scores
        ]
    for source, scores in sorted((results.get("test_by_source") or {}).items()):
        split = f"test ({source}, {scores['pairs']} pairs)"
        rows.append({"split": split, "bleu": format_value(scores["bleu"]), "chrf": format_value(scores["chrf"])})
    return rows, eval_results


def _data_description(facts: ModelCardFacts) -> str:
    """Where the data came from: the Debian corpus's packages and licences (``corpus.LICENSES``), or a name."""
    if not facts.corpus_stats:
        return f"Data set: `{facts.dataset_name}`."
    from ..corpus.packages import LICENSES

    stats = facts.corpus_stats
    pair = stats.get("pair", "de-en")
    licences = stats.get("licenses") or LICENSES
    spdx = sorted({text.split(" ")[0] for text in licences.values()})
    lines = [
        f"The {pair} corpus, built offline from Debian packages by `hf_reservoir.corpus.build.build_corpus` (the text",
        "is not redistributed; the builder fetches it on the user's machine):",
        "",
        "| package | version |",
        "|---|---|",
        *[f"| `{p}` | {v} |" for p, v in stats.get("packages", {}).items()],
        "",
        "| source | licence | pairs kept |",
        "|---|---|---|",
        *[f"| {s} | {lic} | {stats.get('kept', {}).get(s, 'n/a')} |" for s, lic in licences.items()],
        "",
        f"Split sizes: {stats.get('splits')}. The weights are derived from {' and '.join(spdx)} text; check these "
        "licences before redistributing them.",
    ]
    return "\n".join(lines)


def _architecture(facts: ModelCardFacts) -> dict:
    """Layout and reservoir settings, read from the saved config (which owns the layout)."""
    from ..models.reservoir_marian.configuration_reservoir import ReservoirMarianConfig

    config = ReservoirMarianConfig.from_dict(facts.config)
    parameters = facts.results.get("parameters", {})
    return {
        "encoder_layout": config.encoder_layout,
        "decoder_layout": config.decoder_layout,
        "reservoir_types": ", ".join(f"layer {i}: {t}" for i, t in config.encoder_reservoir_types.items()) or "none",
        "reservoir_init": config.reservoir_init,
        "reservoir_seed": config.reservoir_seed,
        "reservoir_storage": config.reservoir_storage,
        "layernorm_position": config.layernorm_position,
        "decoder_layers": config.decoder_layers,
        "trainable_parameters": f"{parameters.get('trainable', 0):,}",
        "total_parameters": f"{parameters.get('total', 0):,}",
    }


def _convergence(results: dict) -> dict:
    convergence = results.get("convergence", {})
    return {
        "final_decoding": _decoding(results.get("final_num_beams")),
        "curve_decoding": _decoding(results.get("training", {}).get("evaluation_num_beams")),
        "peak_bleu": format_value(convergence.get("peak_bleu")),
        "time_to_peak": _minutes(convergence.get("time_to_peak_seconds")),
        "step_at_peak": format_value(convergence.get("step_at_peak")),
        "seconds_per_epoch": format_value(convergence.get("seconds_per_epoch"), 0),
        # Results written before the horizon had its own name call it aucc_budget_seconds.
        "aucc_horizon": _minutes(convergence.get("aucc_horizon_seconds", convergence.get("aucc_budget_seconds"))),
        "aucc_bleu_hours": format_value(convergence.get("aucc_bleu_hours"), 4),
        "aucc_normalized": format_value(convergence.get("aucc_normalized")),
    }


def build_model_card(facts: ModelCardFacts):
    """Render the card through the one template; returns a ``huggingface_hub.ModelCard``."""
    from huggingface_hub import ModelCard, ModelCardData

    results = facts.results
    languages = [results.get("source_lang", "de"), results.get("target_lang", "en")]
    score_rows, eval_results = _score_rows_and_results(facts)
    card_data = ModelCardData(
        language=languages,
        license="other",
        license_name="training-data-licences",
        license_link="LICENSE",
        library_name="transformers",
        pipeline_tag="translation",
        tags=["translation", "reservoir-transformer", "marian", "hf-reservoir"],
        datasets=[facts.dataset_name] if not facts.corpus_stats else None,
        metrics=["bleu", "chrf"],
        model_name=facts.repo_id,
        eval_results=eval_results or None,
    )
    setup_lines = [f"- {key}: `{value}`" for key, value in sorted(facts.training.items())]
    setup_lines.append(f"- hardware: {facts.hardware or 'n/a'}")
    placeholders = {
        "model_name": facts.repo_id.split("/")[-1],
        "source_lang": languages[0],
        "target_lang": languages[1],
        "repo_id": facts.repo_id,
        **_architecture(facts),
        **_convergence(results),
        "hardware": facts.hardware or "n/a",
        "score_rows": score_rows,
        "plot_file": facts.plot_file,
        "training_setup": "\n".join(setup_lines),
        "example_source": facts.example_source.replace("\\", "\\\\").replace('"', '\\"'),
        "data_description": _data_description(facts),
        "ctranslate2_usage": _ctranslate2_usage(facts),
    }
    return ModelCard.from_template(card_data, template_path=TEMPLATE_PATH, **placeholders)


def _ctranslate2_usage(facts: ModelCardFacts) -> str:
    """How to run the model with CTranslate2, or why it cannot be exported (the engine's own check decides)."""
    from ..evaluation.ctranslate2_engine import ExportError, check_exportable
    from ..models.reservoir_marian.configuration_reservoir import ReservoirMarianConfig

    try:
        check_exportable(ReservoirMarianConfig.from_dict(facts.config))
    except ExportError as error:
        return f"This model cannot run on CTranslate2: {error}"
    source = facts.example_source.replace("\\", "\\\\").replace('"', '\\"')
    return "\n".join(
        [
            "Faster on the CPU: CTranslate2, the engine OPUS-MT and Argos Translate run on. The export computes what",
            "the model computes (greedy output identical, tested in hf-reservoir):",
            "",
            "```bash",
            'pip install "hf-reservoir[ctranslate2]"',
            f"hf download {facts.repo_id} --local-dir {facts.repo_id.split('/')[-1]}  # or a local model folder",
            f"hf-reservoir export {facts.repo_id.split('/')[-1]} --format ctranslate2 --output_dir model-ct2",
            f'echo "{source}" | hf-reservoir translate model-ct2 --engine ctranslate2',
            "```",
        ]
    )


def _decoding(beams) -> str:
    if beams is None:
        return "n/a"
    return "greedy decoding" if int(beams) == 1 else f"beam search ({beams} beams)"


SPDX_URL = "https://spdx.org/licenses/{}.html"


def licence_text(facts: ModelCardFacts) -> str:
    """The model folder's ``LICENSE`` (the card's ``license_link``): the licences of the code and of the text the
    weights were trained on, each with its SPDX page, so that the link resolves wherever the folder travels."""
    from ..corpus.packages import LICENSES

    lines = [
        f"Licences of the model {facts.repo_id}",
        "",
        "Code: the remote-code files (configuration_reservoir.py, modeling_reservoir.py) come from hf-reservoir,",
        f"Apache-2.0: {SPDX_URL.format('Apache-2.0')}",
        "",
    ]
    if facts.corpus_stats:
        licences = facts.corpus_stats.get("licenses") or LICENSES
        lines.append("Weights: trained on text under these licences (source: licence):")
        for source, text in sorted(licences.items()):
            lines.append(f"- {source}: {text}; {SPDX_URL.format(text.split(' ')[0])}")
        lines.append("Check these licences before redistributing the weights.")
    else:
        lines.append(f"Weights: trained on the data set {facts.dataset_name}; its licence applies, see its data card.")
    return "\n".join(lines) + "\n"


def write_model_card(model_dir: str, run_dir: str, repo_id: str) -> str:
    """Write ``README.md`` (the card), ``LICENSE`` (its licence link) and ``convergence.png`` into ``model_dir``;
    return the card path."""
    facts = ModelCardFacts.from_run(run_dir, model_dir, repo_id)
    card = build_model_card(facts)
    with open(os.path.join(model_dir, "LICENSE"), "w", encoding="utf-8") as handle:
        handle.write(licence_text(facts))
    plot = os.path.join(run_dir, CONVERGENCE_PLOT)
    if os.path.exists(plot) and os.path.abspath(plot) != os.path.abspath(os.path.join(model_dir, facts.plot_file)):
        shutil.copyfile(plot, os.path.join(model_dir, facts.plot_file))
    path = os.path.join(model_dir, "README.md")
    card.save(path)
    return path


def corpus_stats(data_path: str) -> dict | None:
    """A built corpus's ``stats.json`` (sizes, sources, licences), or None for other data."""
    if not os.path.exists(os.path.join(data_path, CORPUS_STATS_FILE)):
        return None
    return read_run_file(data_path, CORPUS_STATS_FILE)


def _plain(value) -> str:
    """An enum's value (``inverse_sqrt``), not its repr (``SchedulerType.INVERSE_SQRT``)."""
    return str(getattr(value, "value", value))


def training_facts(
    training_args, max_tokens: int | None, trainer, lr_cooldown: float | None = None, on_clock: bool = True
) -> dict:
    """The settings a model card reports (``max_tokens``: the token budget per batch, if batches are by tokens)."""
    args = training_args
    schedule = f"{_plain(args.lr_scheduler_type)}, {args.warmup_steps:g} warm-up steps"
    if lr_cooldown:
        window = "training budget (wall-clock)" if on_clock else f"{args.max_steps} steps"
        schedule += f", then linear cool-down to 0 over the last {lr_cooldown:.0%} of the {window}"
    batch = (
        f"{max_tokens} tokens"
        if max_tokens
        else f"{args.per_device_train_batch_size} pairs x {args.world_size} processes"
    )
    if getattr(trainer, "length_buckets", None):
        batch += f", padded to length buckets {trainer.length_buckets}"
    return {
        "optimizer": f"{_plain(args.optim)} (betas {args.adam_beta1}, {args.adam_beta2}), "
        f"weight decay {args.weight_decay}",
        "learning_rate": args.learning_rate,
        "lr_scheduler": schedule,
        "batch": batch,
        "label_smoothing": args.label_smoothing_factor,
        "steps": trainer.state.global_step,
        "epochs": round(trainer.state.epoch or 0, 3),
        "precision": "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32",
        "seed": args.seed,
        "evaluation_num_beams": args.generation_num_beams or 1,
    }
