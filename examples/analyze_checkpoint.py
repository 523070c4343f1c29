"""Analyse a saved checkpoint: timescales, routing by ablation, memory span, ... (a thin script over the API).

Usage::

    python examples/analyze_checkpoint.py outputs/mtlstm-small/best_model   # the corpus it was trained on
    python examples/analyze_checkpoint.py runs/mts --data data/penn --max-tokens 20000

The same as ``mtlstm-analyze CHECKPOINT [--data DATA]`` but printing a short summary; the report
folder (``report.json`` + ``figures/``, layout in ``mtlstm_hf/analysis/README.md``) goes to
``CHECKPOINT/analysis`` unless ``--output-dir`` says otherwise. Without ``--data``, the corpus is
the one ``mtlstm-train`` recorded with the checkpoint (the shipped WikiText-2 sample by default).
Layers are numbered from 1, as in the paper and report.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mtlstm_hf.analysis import AnalysisSettings, analyze_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data", default=None, help="corpus folder or Hub id (default: the recorded training corpus)")
    parser.add_argument("--split", default="valid")
    parser.add_argument("--output-dir", type=Path, default=None)
    parser.add_argument("--max-tokens", type=int, default=None)
    parser.add_argument("--analyses", nargs="+", default=None, help="subset of the analyses (default: all)")
    args = parser.parse_args()

    output_dir = args.output_dir or args.checkpoint / "analysis"
    settings = AnalysisSettings(max_tokens=args.max_tokens)
    report = analyze_checkpoint(
        args.checkpoint,
        args.data,
        output_dir,
        split=args.split,
        analyses=args.analyses,
        settings=settings,
        progress=True,
    )

    timescales = report["analyses"].get("timescales")
    if timescales:
        for layer in timescales["layers"]:
            summary, fit = layer["summary"], layer["fits"].get("inverse_gamma", {})
            fitted = (
                f"best fit {layer['best_family']}; InvGamma alpha = {fit.get('parameters', {}).get('alpha', float('nan')):.3g}"
                if layer["fit_note"] is None
                else f"no fit: {layer['fit_note']}"
            )
            print(
                f"layer {layer['layer']}: median T = {summary['quantiles']['0.5']:.3g} tokens, "
                f"max {summary['quantiles']['1']:.3g}; {fitted}"
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
