"""`scaling design`: the grid that pins the law down the most for the compute, before it trains.

Given a pilot law and its noise model (a fits.json, or constants and sds), a sweep file as template
(its train/eval/arms are kept; its own grid is "today's grid"), a model ladder, a compute limit and a
target (the 95% interval width of a, alpha, beta, or of the compute-optimal loss at a stated compute),
it ranks candidate isoFLOP grids (:mod:`analysis.design_grid`) by the linearised Huber fit
(:mod:`analysis.design`), prints the frontier (compute vs predicted width), confirms the best few with
the simulator (:mod:`analysis.power`) and writes the winner as a sweep file, checked by `scaling plan`.
"""
from __future__ import annotations

import argparse

TARGET_HELP = ("a | alpha | beta | exponents (the worst of alpha, beta and a over the fit verdict's 'wide' limit: "
               "what flags a fit) | loss (the compute-optimal loss at --at-compute)")


def add_design_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    from .cli import add_noise_arguments, non_negative_number, positive_number, seed

    parser.description = (
        "Design a grid before it trains: search sizes, budgets and tokens-per-parameter bands under a compute "
        "limit for the narrowest predicted interval of a target (linearised Huber fit at a pilot law, with run-level "
        "noise), confirm the best with simulated studies and write the winner as a sweep file.")
    parser.add_argument("template", metavar="SWEEP", help="sweep file whose train/eval/arms the design keeps; its own "
                                                          "grid is today's grid, compared against")
    parser.add_argument("--law", required=True, metavar="FITS_JSON_OR_LAW",
                        help="a pilot fits.json (each arm's law and noise model) or E=..,A=..,B=..,alpha=..,beta=..")
    parser.add_argument("--arm", action="append", help="arm(s) of the pilot to design for (default: every arm of the "
                                                       "template the pilot has; the grid serves the worst of them)")
    parser.add_argument("--noise", type=positive_number, help="iid sd of the log losses (instead of a noise model)")
    add_noise_arguments(parser)
    parser.add_argument("--ladder", help="comma-separated model names to choose sizes from (default: the template's "
                                         "models)")
    parser.add_argument("--max-flops", type=positive_number, help="compute limit in FLOPs (6ND, cooldown branches "
                                                                  "included; default: today's grid's)")
    parser.add_argument("--gpu-hours", type=positive_number, help="compute limit in GPU-hours at --mfu of --gpu-flops")
    parser.add_argument("--mfu", type=positive_number, default=0.4, help="model FLOPs utilisation for --gpu-hours "
                                                                         "(default 0.4)")
    parser.add_argument("--gpu-flops", type=positive_number, default=989e12, help="peak FLOP/s of one GPU for "
                                                                                  "--gpu-hours (default 989e12)")
    parser.add_argument("--max-seconds", type=positive_number, help="wall-time limit of the whole grid, with the time "
                                                                    "model below (default: none)")
    parser.add_argument("--flops-per-second", type=positive_number, help="training speed of one worker, 6ND FLOP/s "
                                                                         "(time model)")
    parser.add_argument("--run-seconds", type=non_negative_number, default=0.0, help="fixed cost of a run, seconds "
                                                                                     "(time model; default 0)")
    parser.add_argument("--point-seconds", type=non_negative_number, default=0.0,
                        help="cost of evaluating one point (a run end or a branch), seconds (time model; default 0)")
    parser.add_argument("--workers", type=int, default=1, help="runs trained at once (time model; default 1)")
    parser.add_argument("--schedule", choices=("wsd", "cosine"), help="wsd: one run per size with cooldown branches; "
                                                                      "cosine: one run per point (default: the template's)")
    parser.add_argument("--target", default="a", choices=("a", "alpha", "beta", "exponents", "loss"), help=f"what to pin down: "
                                                                                                 f"{TARGET_HELP}")
    parser.add_argument("--at-compute", type=positive_number, help="FLOPs at which --target loss is predicted")
    parser.add_argument("--interval", choices=("max", "bootstrap", "sampling"), default="max",
                        help="rank by the predicted bootstrap width (what the fit's verdict reads), the predicted "
                             "spread of the estimate across repeated studies (sampling), or the larger of the two "
                             "(default: max; the bootstrap alone rewards few runs with many branches, whose points "
                             "it takes as independent)")
    parser.add_argument("--min-sizes", type=int, default=4, help="fewest model sizes a candidate grid may have "
                                                                 "(default 4)")
    parser.add_argument("--seeds", default="1,2", metavar="K[,K...]",
                        help="seeds per size to search (the sweep's replicates), comma-separated counts: each count "
                             "for every size, and counts above 1 also for the larger half of the sizes only "
                             "(default 1,2; 1: one run per grid point)")
    parser.add_argument("--confirm", type=int, default=2, help="best candidates confirmed by simulated studies, "
                                                               "today's grid included (default 2; 0: none)")
    parser.add_argument("--replicates", type=int, default=10, help="simulated studies per confirmed grid and arm "
                                                                   "(default 10)")
    parser.add_argument("--resamples", type=int, default=100, help="bootstrap resamples per simulated study "
                                                                   "(default 100)")
    parser.add_argument("--seed", type=seed, default=0, help="seed of the simulated noise (default 0)")
    parser.add_argument("--frontier", type=int, default=12, help="frontier rows printed (default 12)")
    parser.add_argument("--out", help="write the winning grid here as a sweep file (the template with its models, "
                                      "budgets and tokens-per-parameter band replaced)")
    return parser


def run_design(args) -> int:
    from scaling.errors import ConfigError

    from . import design_run
    from .cli import check_simulation_sizes, huber_delta_of

    if args.confirm < 0:
        raise ConfigError("must be at least 0 (grids confirmed by simulated studies)", field="--confirm",
                          value=args.confirm)
    if args.confirm:
        check_simulation_sizes(args)
    if args.min_sizes < 3:
        raise ConfigError("must be at least 3 (the N term has three parameters)", field="--min-sizes",
                          value=args.min_sizes)
    if args.workers < 1:
        raise ConfigError("must be at least 1", field="--workers", value=args.workers)
    args.seeds = seed_counts(args.seeds)
    args.huber_delta = huber_delta_of(args)
    if args.frontier < 1:
        raise ConfigError("must be at least 1 (rows of the frontier printed)", field="--frontier", value=args.frontier)
    if args.out is not None:
        from scaling.atomic import check_out_file

        check_out_file(args.out, "--out")  # before the search: an output that cannot be written is refused first
    if args.target == "loss" and args.at_compute is None:
        raise ConfigError("is needed for --target loss", field="--at-compute")
    if args.max_seconds is not None and args.flops_per_second is None:
        raise ConfigError("is needed for --max-seconds (the time model)", field="--flops-per-second")
    return design_run.run(args)


#: The most seeds per size the search may try (each is a whole run of the size)
MAX_SEEDS = 10


def seed_counts(text) -> tuple[int, ...]:
    """``--seeds``: counts of seeds per size, e.g. ``1,2``."""
    from scaling.errors import ConfigError

    try:
        counts = tuple(int(x) for x in str(text).split(",") if x.strip())
    except ValueError:
        counts = ()
    if not counts or any(not 1 <= k <= MAX_SEEDS for k in counts):
        raise ConfigError(f"must be comma-separated counts of seeds per size, each 1 to {MAX_SEEDS}", field="--seeds",
                          value=text)
    return counts


def register(sub) -> None:
    d = sub.add_parser("design", help="which grid pins the law down the most for the compute? (before it trains)")
    add_design_arguments(d).set_defaults(func=run_design)
