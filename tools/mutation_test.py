"""Mutation testing of minidl with mutmut: do the tests notice a small plausible bug?

mutmut makes thousands of one-token changes ("mutants") to the library (``+=`` to ``=``,
``>`` to ``>=``, a constant off by one, an argument dropped) and runs the tests that
reach each changed function. A mutant the tests notice is *killed*; one they do not
notice *survived* and marks a contract no test pins (or an equivalent change, such as
``x * 1.0`` for ``x``). Slow, so not part of CI::

    pip install mutmut
    python tools/mutation_test.py run                 # whole scope: hours on 2 cores
    python tools/mutation_test.py run --only 'minidl/optim/*.py'
    python tools/mutation_test.py run --sample 0.3    # a seeded 30 % of the mutants not run yet
    python tools/mutation_test.py report              # kill rate per file
    python tools/mutation_test.py report --diffs DIR  # the survivors' diffs, per file

``run`` copies the committed tree (``git archive HEAD``) into a scratch directory
(default ``/tmp/minidl-mutants``), writes mutmut's configuration there and runs
``mutmut run`` with the ``mutation`` hypothesis profile (few examples per test, no
shrinking) and one thread for BLAS, OpenMP and minidl's copies in each worker. A second
``run`` in the same directory continues where the first stopped (``--only`` takes effect
when the directory is made). ``report`` reads mutmut's result files: exit code 1 killed, -24 timed
out (counted as killed, as mutmut does), 0 survived, 33 no test reaches the function,
None not run yet.
"""
import argparse
import collections
import glob
import json
import os
import random
import re
import shutil
import subprocess
import sys

SCOPE = ["minidl/layers/*.py", "minidl/losses.py", "minidl/optim/*.py", "minidl/gradcheck.py"]
# Not mutated: re-exports, and the CUDA kernels (no GPU in CI or on most laptops).
SKIP = ["minidl/layers/__init__.py", "minidl/optim/__init__.py", "minidl/layers/gpu_kernels.py"]
# The in-process tests of the scope. Left out: end-to-end trainings, notebooks, examples
# and the mpiexec tests (subprocesses are invisible to mutmut).
TESTS = ["test_activations", "test_attention", "test_bad_input", "test_checks", "test_clip",
         "test_contracts", "test_conv", "test_dropout", "test_embedding", "test_fuzz",
         "test_fuzz_sequence", "test_interop", "test_layer_norm", "test_losses",
         "test_losses_sequence", "test_lr_scheduler", "test_module", "test_mutants",
         "test_mutants_layers", "test_mutants_losses_gradcheck", "test_mutants_optim",
         "test_mutants_sequence", "test_naive", "test_normalization", "test_numerics",
         "test_optim", "test_pooling", "test_recurrent", "test_state_all_or_nothing"]
DESELECT = ["tests/test_recurrent.py::test_char_lstm_example_smoke"]  # a subprocess
STATUS = {1: "killed", -24: "timeout", 0: "survived", 33: "no tests", None: "not run"}


def files_in_scope(root, only):
    patterns = only or SCOPE
    found = sorted({path for pattern in patterns
                    for path in glob.glob(os.path.join(root, pattern))})
    return [os.path.relpath(path, root) for path in found
            if os.path.relpath(path, root) not in SKIP]


def write_config(directory, files):
    tests = [f"tests/{name}.py" for name in TESTS
             if os.path.exists(os.path.join(directory, "tests", f"{name}.py"))]
    lines = ["[mutmut]", "source_paths=minidl",
             "only_mutate=" + "\n    ".join(files),
             "pytest_add_cli_args_test_selection=" + "\n    ".join(tests),
             "pytest_add_cli_args=" + " ".join(f"--deselect={d}" for d in DESELECT),
             "timeout_multiplier=4.0", "timeout_constant=2.0", "also_copy=pytest.ini"]
    with open(os.path.join(directory, "setup.cfg"), "w") as config:
        config.write("\n".join(lines) + "\n")


def run(args):
    repository = subprocess.run(["git", "rev-parse", "--show-toplevel"], check=True,
                                capture_output=True, text=True).stdout.strip()
    if not os.path.isdir(os.path.join(args.dir, "mutants")):
        shutil.rmtree(args.dir, ignore_errors=True)
        os.makedirs(args.dir)
        archive = subprocess.run(["git", "-C", repository, "archive", "HEAD"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", args.dir], input=archive, check=True)
        write_config(args.dir, files_in_scope(args.dir, args.only))
    # One thread everywhere: mutmut forks a worker per mutant, and a child forked while
    # an OpenMP team (PyTorch's, in the reference tests) exists waits on it for ever.
    environment = dict(os.environ, HYPOTHESIS_PROFILE="mutation", OPENBLAS_NUM_THREADS="1",
                       OMP_NUM_THREADS="1", MINIDL_NUM_THREADS="1")
    mutants = list(args.mutants)
    if args.sample:
        mutants += sample_not_run(args.dir, args.sample, environment)
    command = ["mutmut", "run", "--max-children", str(args.max_children)] + mutants
    shown = command if len(mutants) <= 3 else command[:7] + [f"... ({len(mutants)} mutants)"]
    print("in", args.dir, ":", " ".join(shown), flush=True)
    return subprocess.run(command, cwd=args.dir, env=environment).returncode


def sample_not_run(directory, fraction, environment):
    """A seeded ``fraction`` of each file's mutants that have no result yet."""
    if not results(directory):
        # mutmut has no generate-only command: a filter that matches nothing makes it
        # generate the mutants and collect its test statistics, then stop.
        subprocess.run(["mutmut", "run", "no-such-mutant"], cwd=directory, env=environment,
                       capture_output=True)
    chosen = []
    for source, codes in results(directory).items():
        not_run = sorted(name for name, code in codes.items() if code is None)
        chosen += random.Random(source).sample(not_run, round(fraction * len(not_run)))
    print(f"sampled {len(chosen)} mutants not run yet ({fraction:.0%} of each file's)")
    return chosen


def results(directory):
    """{source file: {mutant name: exit code}} from mutmut's .meta files."""
    by_file = {}
    for meta in sorted(glob.glob(os.path.join(directory, "mutants", "minidl", "**", "*.meta"),
                                 recursive=True)):
        source = os.path.relpath(meta, os.path.join(directory, "mutants"))[:-len(".meta")]
        with open(meta) as handle:
            by_file[source] = json.load(handle)["exit_code_by_key"]
    return by_file


def only_a_message_changed(diff):
    """Whether the mutant changed nothing but the text inside string literals."""
    def strip(lines):
        return [re.sub(r"([\"'])(?:(?!\1).)*\1", "S", line[1:]) for line in lines]
    removed = [line for line in diff.splitlines() if line.startswith("-")
               and not line.startswith("---")]
    added = [line for line in diff.splitlines() if line.startswith("+")
             and not line.startswith("+++")]
    return strip(removed) == strip(added)


def report(args):
    by_file = results(args.dir)
    if not by_file:
        sys.exit(f"no mutmut results under {args.dir}/mutants: run first")
    totals = collections.Counter()
    print(f"{'file':36s} {'mutants':>8s} {'killed':>7s} {'timeout':>8s} {'survived':>9s} "
          f"{'no tests':>9s} {'not run':>8s} {'kill rate':>10s}")
    for source, codes in by_file.items():
        counts = collections.Counter(STATUS.get(code, "other") for code in codes.values())
        totals.update(counts)
        tested = counts["killed"] + counts["timeout"] + counts["survived"]
        rate = f"{100 * (counts['killed'] + counts['timeout']) / tested:.1f} %" if tested else "-"
        print(f"{source:36s} {len(codes):8d} {counts['killed']:7d} {counts['timeout']:8d} "
              f"{counts['survived']:9d} {counts['no tests']:9d} {counts['not run']:8d} "
              f"{rate:>10s}")
    tested = totals["killed"] + totals["timeout"] + totals["survived"]
    print(f"{'all':36s} {sum(totals.values()):8d} {totals['killed']:7d} {totals['timeout']:8d} "
          f"{totals['survived']:9d} {totals['no tests']:9d} {totals['not run']:8d} "
          f"{100 * (totals['killed'] + totals['timeout']) / max(tested, 1):9.1f} %")
    if args.diffs:
        write_survivor_diffs(args.dir, by_file, args.diffs)


def write_survivor_diffs(directory, by_file, out):
    """One file per source file and kind (code / message) with every survivor's diff."""
    os.makedirs(out, exist_ok=True)
    for source, codes in by_file.items():
        survivors = [name for name, code in sorted(codes.items()) if code == 0]
        if not survivors:
            continue
        groups = collections.defaultdict(list)
        for name in survivors:
            diff = subprocess.run(["mutmut", "show", name], cwd=directory, check=True,
                                  capture_output=True, text=True).stdout
            groups["message" if only_a_message_changed(diff) else "code"].append(diff)
        for kind, diffs in groups.items():
            path = os.path.join(out, f"{source.replace('/', '.')}.{kind}.diff")
            with open(path, "w") as handle:
                handle.write("\n".join(diffs))
            print(f"{len(diffs):4d} {kind} survivors of {source} -> {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="copy HEAD to a scratch dir and run mutmut")
    report_parser = commands.add_parser("report", help="kill rate per file")
    for sub in (run_parser, report_parser):
        sub.add_argument("--dir", default="/tmp/minidl-mutants", help="scratch directory")
    run_parser.add_argument("--only", nargs="+", help="glob(s) of files to mutate "
                            "(default: layers, losses, optim, gradcheck)")
    run_parser.add_argument("--max-children", type=int, default=os.cpu_count() or 1)
    run_parser.add_argument("--sample", type=float, help="run only this fraction (0-1) of "
                            "each file's mutants not run yet, drawn with a fixed seed")
    run_parser.add_argument("mutants", nargs="*", help="mutant names or globs to (re)run")
    report_parser.add_argument("--diffs", help="write the survivors' diffs to this directory")
    args = parser.parse_args()
    sys.exit(run(args) if args.command == "run" else report(args))


if __name__ == "__main__":
    main()
