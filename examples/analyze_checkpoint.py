"""Analyse a saved checkpoint: timescales, routing by ablation, memory span, ... (a thin script over the API).

Usage::

    python examples/analyze_checkpoint.py runs/mts                      # embedded WikiText-2 sample
    python examples/analyze_checkpoint.py runs/mts --data data/penn --max-tokens 20000

The same as ``mtlstm-analyze CHECKPOINT --data DATA`` but printing a short summary; the report
folder (``report.json`` + ``figures/``, layout in ``mtlstm_hf/analysis/README.md``) goes to
``CHECKPOINT/analysis`` unless ``--output-dir`` says otherwise.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mtlstm_hf.analysis import AnalysisSettings, analyze_checkpoint
from mtlstm_hf.data import sample_corpus_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data", default=str(sample_corpus_dir()), help="corpus folder or Hub id (default: embedded sample)")
    parser.add_argument("--split", default="valid")
    parser.add_argument("--output-dir", type=Path, default=None)
    parser.add_argument("--max-tokens", type=int, default=None)
    parser.add_argument("--analyses", default=None, help="comma-separated subset (default: all)")
    args = parser.parse_args()

    output_dir = args.output_dir or args.checkpoint / "analysis"
    settings = AnalysisSettings(max_tokens=args.max_tokens)
    report = analyze_checkpoint(
        args.checkpoint, args.data, output_dir, split=args.split, analyses=args.analyses, settings=settings, progress=True
    )

    timescales = report["analyses"].get("timescales")
    if timescales:
        for layer in timescales["layers"]:
            summary, fit = layer["summary"], layer["fits"].get("inverse_gamma", {})
            print(
                f"layer {layer['layer']}: median T = {summary['quantiles']['0.5']:.3g} tokens, "
                f"max {summary['quantiles']['1']:.3g}; best fit {layer['best_family']}; "
                f"InvGamma alpha = {fit.get('parameters', {}).get('alpha', float('nan')):.3g}"
            )
    routing = report["analyses"].get("ablation")
    if routing:
        frequency = routing["frequency"]
        print(f"routing (layer {frequency['layer']}, ppl ratio ablated/intact): " + " | ".join(frequency["columns"]))
        for chunk, row in zip(frequency["chunks"], frequency["ratio_matrix"]):
            span = f"T {chunk.get('timescale_min', float('nan')):.3g}-{chunk.get('timescale_max', float('nan')):.3g}"
            print(f"  {span:>18}: " + " ".join(f"{value:.3f}" for value in row))
    for name, reason in report["skipped"].items():
        print(f"skipped {name}: {reason}")
    print(f"report: {output_dir / 'report.json'} ({len(report['figures'])} figures)")


if __name__ == "__main__":
    main()
