//! Wire formats: RTP, RTCP, SDP, NTP (filled in by the wire work).
