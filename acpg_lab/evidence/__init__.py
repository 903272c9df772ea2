"""The evidence behind `REPRODUCTION.md`'s ACPG and PFO rows: experiments defined once, trained in cached pieces
(one condition x one seed group per piece), stored compactly under ``results/evidence/`` and summarised from
what is stored, so every number can be recomputed without training anything.

    python -m acpg_lab.evidence run collapse           # trains the missing pieces of one experiment
    python -m acpg_lab.evidence run heads --only reinforce_cartpole
    python -m acpg_lab.evidence run heads --ray [--address HOST:6379]   # pieces in parallel on Ray
    python -m acpg_lab.evidence report [--check]       # recomputes every table from results/evidence/

One unit per idea:

- `acpg_lab.evidence.conditions`: what is trained (every experiment's conditions, seeds and pieces);
- `acpg_lab.evidence.pieces`: pieces on disk (train one, load a condition, its stored config);
- `acpg_lab.evidence.verdicts`: one verdict-table helper, the smallest-effect rule, the too-few-seeds row;
- `acpg_lab.evidence.collapse`, `acpg_lab.evidence.heads`, `acpg_lab.evidence.pfo`: one module per family of
  tables (notebook 01; notebook 02 and its exploration ablation; notebooks 03 and 04);
- `acpg_lab.evidence.report`: the ordered list of table builders, ``report [--check]``, `stored_table`;
- ``__main__``: the command line above.

Per-seed summaries (final window, steps to threshold, area) are `acpg_lab.summaries`, shared with
`acpg_lab.experiments`; the statistics and the rliable aggregates are `acpg_lab.stats`; the run store is
`acpg_lab.store`.
"""

from acpg_lab.evidence.conditions import (
    EXPERIMENTS,
    EXPLORATION_EPSILONS,
    HEAD_ARMS,
    HEAD_TASKS,
    Condition,
    exploration_condition,
)
from acpg_lab.evidence.heads import complete_tasks
from acpg_lab.evidence.pieces import (
    complete,
    evidence_dir,
    load_condition,
    piece_dir,
    run_experiment,
    stored_config,
    stored_pieces,
)
from acpg_lab.evidence.report import TABLE_INDEX, stored_table

__all__ = ["Condition", "EXPERIMENTS", "HEAD_ARMS", "HEAD_TASKS", "EXPLORATION_EPSILONS", "exploration_condition",
           "evidence_dir", "piece_dir", "run_experiment", "complete", "stored_pieces", "stored_config",
           "load_condition", "complete_tasks", "TABLE_INDEX", "stored_table"]
