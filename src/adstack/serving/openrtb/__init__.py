"""The OpenRTB 2.6 bidder: the request model (model.py), privacy signals (privacy.py), markup (markup.py) and
the bidding itself (bidder.py)."""

from adstack.serving.openrtb.bidder import (
           DEADLINE_MARGIN_MS,
           BadBidRequest,
           bid,
           parse_bid_request,
           withdraw,
)
from adstack.serving.openrtb.model import BidRequest

__all__ = ["DEADLINE_MARGIN_MS", "BadBidRequest", "BidRequest", "bid", "parse_bid_request", "withdraw"]
