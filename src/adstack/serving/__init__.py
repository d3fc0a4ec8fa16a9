"""Ad serving: the hot path from an ad request (SDK or OpenRTB) to the ads that fill it.

snapshot.py (what may serve, frozen) -> index.py (posting-list targeting index) -> eligibility.py (per-candidate
rules) -> ranking.py and prediction.py (eCPM, predicted rates, clearing price) -> pacing.py and counters.py
(budgets, pacing, frequency; in process or in Redis) -> dynamic.py (asset combination) -> engine.py (the
decision). loader.py and runtime.py keep the snapshot current; service.py, openrtb.py and api.py are the edges.
"""
