"""Prints the scalars of a TensorBoard log directory as JSON, read with TensorBoard's own
EventAccumulator: {tag: [[step, value], ...]}, and histograms as {tag: [[step, count], ...]}.
Used by __test__/tensorboard.spec.ts and to tabulate a run's metrics."""
import json
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0, "histograms": 0})
acc.Reload()
tags = acc.Tags()
print(json.dumps({
    "scalars": {t: [[e.step, e.value] for e in acc.Scalars(t)] for t in tags["scalars"]},
    "histograms": {t: [[e.step, e.histogram_value.num] for e in acc.Histograms(t)] for t in tags["histograms"]},
}))
