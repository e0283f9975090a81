"""Scenario (b): the common first implementation, run as its own process so its CPU time and
memory are measured like the worker's.

One message at a time: poll one StudyAnnounced, read and preprocess the DICOM, a synchronous
(non-aio) Triton call, then produce the Finding and flush (wait for the broker) before the next
message. It builds and validates the same Finding the worker does, so the difference with
radstream is the orchestration, not the features. It stops after `--count` benchmark studies or
`--idle-s` without one.

    python -m bench.naive --bootstrap 127.0.0.1:9092 --triton 127.0.0.1:8001 --model identity
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import uuid

import numpy as np
import orjson
import tritonclient.grpc as grpcclient
from confluent_kafka import Consumer, Producer, TopicPartition

from streams.contract import catalog, topics
from streams.contract.cloudevents import ce_headers, utc_now_rfc3339
from streams.contract.events import finding_ok
from streams.contract.schemas import EventKind, validate
from streams.imaging.dicom_io import read_image, resolve_uri
from streams.imaging.preprocess import to_model_input


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--triton", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--root", required=True, help="folder study URIs may point into")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--idle-s", type=float, default=30.0)
    args = parser.parse_args(argv)

    spec = dataclasses.replace(catalog.service("chest-xray"), model=args.model,
                               model_version="1")
    triton = grpcclient.InferenceServerClient(args.triton)
    producer = Producer({"bootstrap.servers": args.bootstrap, "acks": "all",
                         **topics.LIBRDKAFKA_PARTITIONER})
    consumer = Consumer({"bootstrap.servers": args.bootstrap,
                         "group.id": f"bench-naive-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": True})
    parts = []
    for p in range(topics.STUDIES.partitions):
        tp = TopicPartition(topics.STUDIES.name, p)
        parts.append(TopicPartition(topics.STUDIES.name, p,
                                    consumer.get_watermark_offsets(tp, timeout=10)[1]))
    consumer.assign(parts)
    print("ready", flush=True)  # the benchmark publishes only after this line

    done = 0
    last = time.monotonic()
    while done < args.count and time.monotonic() - last < args.idle_s:
        msg = consumer.poll(0.5)
        if msg is None or msg.error():
            continue
        study = orjson.loads(msg.value() or b"{}")
        if study.get("hospital_id") != "BENCH":
            continue
        image = read_image(resolve_uri(study["series"][0]["uri"], [args.root]))
        tensor = to_model_input(image.pixels, photometric=image.photometric, slope=image.slope,
                                intercept=image.intercept, window_center=image.window_center,
                                window_width=image.window_width)
        inp = grpcclient.InferInput(spec.input_name, [1, *tensor.shape], "FP32")
        inp.set_data_from_numpy(tensor[np.newaxis])
        result = triton.infer(spec.model, [inp],
                              outputs=[grpcclient.InferRequestedOutput(spec.output_name)])
        scores = result.as_numpy(spec.output_name)[0]
        body = finding_ok(study, spec, [float(x) for x in np.atleast_1d(scores)],
                          utc_now_rfc3339())
        validate(EventKind.FINDING, body)
        headers: list[tuple[str, str | bytes | None]] = [
            *ce_headers(topics.FINDINGS.event_type, "bench/naive")]
        producer.produce(topics.FINDINGS.name, key=study["study_uid"].encode(),
                         value=orjson.dumps(body), headers=headers)
        producer.flush()
        done += 1
        last = time.monotonic()
    consumer.close()
    print(f"done {done}", flush=True)
    sys.stdin.read()  # stay alive until the benchmark has read our CPU time and memory
    return 0


if __name__ == "__main__":
    sys.exit(main())
