//! ISO-BMFF (MP4/MOV) reader over a byte slice (filled in by the mp4 work).
