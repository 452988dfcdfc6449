"""``hdf5_szip`` (4): HDF5's szip filter (4-byte LE size + szip stream), via imagecodecs.
"""


from __future__ import annotations

from numcodecs.abc import Codec

from chunkview.codecs.common import (
    _call,
    _fail,
    _finish,
    _need_imagecodecs,
    _ratio_check,
    _u8,
)


class HDF5SZIP(Codec):
    """HDF5's szip filter (4): a 4-byte little-endian decoded size, then the szip stream.
    The parameters are the filter's ``cd_values`` (options mask with HDF5's RAW/LSB/MSB bits,
    pixels per block, bits per pixel, pixels per scanline)."""

    codec_id = "hdf5_szip"

    def __init__(self, options_mask=141, pixels_per_block=32, bits_per_pixel=8,
                 pixels_per_scanline=1):
        self.options_mask = int(options_mask)
        self.pixels_per_block = int(pixels_per_block)
        self.bits_per_pixel = int(bits_per_pixel)
        self.pixels_per_scanline = int(pixels_per_scanline)

    def _params(self):
        ppb, bpp, pps = self.pixels_per_block, self.bits_per_pixel, self.pixels_per_scanline
        if not (2 <= ppb <= 32 and ppb % 2 == 0):
            raise _fail(self.codec_id, f"invalid pixels_per_block {ppb}")
        if not (1 <= bpp <= 32 or bpp == 64):
            raise _fail(self.codec_id, f"invalid bits_per_pixel {bpp}")
        if not (1 <= pps <= ppb * 128):
            raise _fail(self.codec_id, f"invalid pixels_per_scanline {pps}")
        return self.options_mask, ppb, bpp, pps

    def encode(self, buf):
        ic = _need_imagecodecs()
        return ic.szip_encode(_u8(buf).tobytes(), *self._params(), header=True)

    def decode(self, buf, out=None):
        ic = _need_imagecodecs()
        params = self._params()
        data = _u8(buf)
        if data.size < 4:
            raise _fail(self.codec_id, f"{data.size} bytes, shorter than the 4-byte header")
        size = int.from_bytes(data[:4].tobytes(), "little")
        if size == 0:
            return _finish(b"", out)
        if data.size == 4:
            raise _fail(self.codec_id, "no compressed data after the header")
        # zero-block runs compress a reference sample interval to a few dozen bits
        _ratio_check(self.codec_id, size, data.size, 1 << 14)
        # (decoding without imagecodecs' header handling: it reports the header's size even
        # when the stream ran out early)
        res = _call(self.codec_id, ic.szip_decode, data[4:], *params, header=False, out=size)
        if len(res) != size:
            raise _fail(self.codec_id, f"truncated: decoded {len(res)} bytes, header says "
                                       f"{size}")
        return _finish(res, out)

    def get_config(self):
        return {
            "id": self.codec_id,
            "options_mask": self.options_mask,
            "pixels_per_block": self.pixels_per_block,
            "bits_per_pixel": self.bits_per_pixel,
            "pixels_per_scanline": self.pixels_per_scanline,
        }

    def __repr__(self):
        return (f"HDF5SZIP(options_mask={self.options_mask}, pixels_per_block="
                f"{self.pixels_per_block}, bits_per_pixel={self.bits_per_pixel}, "
                f"pixels_per_scanline={self.pixels_per_scanline})")


# ------------------------------------------------------------------ Blosc (1)

