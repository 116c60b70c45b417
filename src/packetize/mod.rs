//! RTP payload formats (filled in by the packetizer work).
