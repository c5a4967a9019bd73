"""The stages of ImgKit's pipeline: one module per stage, each a plain async function
from one record to the records it emits, plus `topology.py`, which wires them to topics.
No agent knows whether it runs on the in-process bus or on Kafka."""
