"""The event pipeline: what happens after the decision.

```
 /t/imp /t/click /t/video, notices ──check token, append (group commit)──> log ──> 204/302
 log (local journal, or NATS JetStream) ──> billing      one apply_charges per batch, reservations settled
                                        ──> touchpoints  bulk insert, once per id
                                        ──> events       the event store (and predictions, via its listeners)
```
`log.py` is the log, `records.py` what is in it, `consumers.py` who applies it, `service.py` runs them.
"""
