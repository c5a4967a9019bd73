"""The stream layer: topics, typed records, the topology as data, and two runners.

Agents are plain async functions from records to the records they emit. This
package wires them to a transport: `memory.MemoryRunner` (in-process asyncio
bus, embedded mode) or `faust_runner.FaustRunner` (Apache Kafka through Faust).
Nothing here knows what an image is.
"""
