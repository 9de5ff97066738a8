"""Simple delineation of noiseless synthetic ECGs, to check that each class is really in the signal.

Works on the 12-lead signal [12, n] in mV. Thresholds are fractions of each wave's own peak, which for the
generator's Gaussian components puts boundaries at about 2.5 sigma, where the generator puts them too.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import find_peaks

from ecgtl.inputs import STANDARD_LEADS

INDEPENDENT = [STANDARD_LEADS.index(lead) for lead in ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")]


def lead(signal, name):
    return signal[STANDARD_LEADS.index(name)]


def qrs_complexes(signal: np.ndarray, fs: float) -> list[tuple[int, int, int]]:
    """(onset, peak, offset) sample indices of each QRS, from the summed absolute slope."""
    slope = np.abs(np.diff(signal[INDEPENDENT], axis=1)).sum(axis=0)
    magnitude = _magnitude(signal)
    peaks, _ = find_peaks(slope, height=0.35 * slope.max(), distance=int(0.3 * fs))
    complexes = []
    for peak in peaks:
        onset, offset = _edge(slope, magnitude, peak, -1, fs), _edge(slope, magnitude, peak, +1, fs)
        if onset > int(0.45 * fs) and offset < len(slope) - int(0.6 * fs):
            complexes.append((onset, peak, offset))
    return complexes


def _edge(slope, magnitude, peak, step, fs):
    """Walk from the QRS slope peak until the slope stays below 4% of it for 12 ms, or until the spatial
    magnitude has a local minimum below 15% of the QRS's while the slope is low (where a discordant ST-T begins without a gap)."""
    position, run = peak, int(0.012 * fs)
    top = magnitude[max(0, peak - run):peak + run].max()
    while run < position < len(slope) - run - 1:
        ahead = slope[position:position + run] if step > 0 else slope[position - run:position]
        if ahead.max() < 0.04 * slope[peak]:
            break
        if slope[position] < 0.2 * slope[peak] and magnitude[position] < 0.15 * top \
                and magnitude[position + step] > magnitude[position] \
                and magnitude[position - step] > magnitude[position]:
            break
        position += step
    return position


def qrs_duration_ms(signal, fs):
    return 1000 * np.median([(off - on) / fs for on, _, off in qrs_complexes(signal, fs)])


def _magnitude(signal):
    return np.sqrt((signal[INDEPENDENT] ** 2).sum(axis=0))


def _p_wave(magnitude, onset, fs):
    """(start, end) of the P wave before a QRS onset, bounded where its magnitude is below 5% of its peak."""
    low = onset - int(0.45 * fs)
    end = onset
    while end > low and magnitude[end - 1] <= magnitude[end]:  # down the QRS foot to the PR segment
        end -= 1
    while end > low and magnitude[end] < 0.03:  # across the flat PR segment
        end -= 1
    peak = end
    while peak > low and magnitude[peak - 1] >= magnitude[peak]:  # up to the (last) P hump
        peak -= 1
    start = peak
    while start > low and magnitude[start] > 0.05 * magnitude[peak]:
        start -= 1
    stop = peak
    while stop < onset and magnitude[stop] > 0.05 * magnitude[peak]:
        stop += 1
    return start, stop


def pr_interval_ms(signal, fs):
    """QRS onset minus P onset (P onset: where the P magnitude falls below 5% of its peak)."""
    magnitude = _magnitude(signal)
    return 1000 * np.median([(onset - _p_wave(magnitude, onset, fs)[0]) / fs
                             for onset, _, _ in qrs_complexes(signal, fs)])


def p_duration_ms(signal, fs):
    magnitude = _magnitude(signal)
    spans = [_p_wave(magnitude, onset, fs) for onset, _, _ in qrs_complexes(signal, fs)]
    return 1000 * np.median([(end - start) / fs for start, end in spans])


def p_terminal_v1(signal, fs):
    """Most negative V1 value in the second half of the P wave (deep terminal negativity in LAE)."""
    magnitude = _magnitude(signal)
    values = []
    for onset, _, _ in qrs_complexes(signal, fs):
        start, end = _p_wave(magnitude, onset, fs)
        values.append(lead(signal, "V1")[(start + end) // 2:end + 1].min())
    return float(np.median(values))


def qtc_ms(signal, fs):
    """Bazett QTc: QRS onset to T end (T magnitude below 5% of its peak), over sqrt(RR)."""
    magnitude = _magnitude(signal)
    complexes = qrs_complexes(signal, fs)
    values = []
    for (onset, peak, offset), (_, next_peak, _) in zip(complexes, complexes[1:], strict=False):
        rr = (next_peak - peak) / fs
        search = magnitude[offset + int(0.04 * fs):offset + int(0.6 * fs)]
        t_peak = offset + int(0.04 * fs) + int(np.argmax(search))
        end = t_peak
        while magnitude[end] > 0.05 * magnitude[t_peak]:
            end += 1
        values.append(((end - onset) / fs) / np.sqrt(rr))
    return 1000 * np.median(values)


def frontal_axis_deg(signal, fs):
    """Hexaxial axis from the net QRS deflection (max + min) in leads I and aVF."""
    net_i, net_avf = [], []
    for onset, _, offset in qrs_complexes(signal, fs):
        for name, store in (("I", net_i), ("aVF", net_avf)):
            segment = lead(signal, name)[onset:offset + 1]
            store.append(segment.max() + segment.min())
    return float(np.degrees(np.arctan2(np.median(net_avf), np.median(net_i))))


def qrs_part(signal, fs, name, start_fraction, end_fraction):
    """Extremes of one lead within a fraction of each QRS: (median max, median min)."""
    highs, lows = [], []
    for onset, _, offset in qrs_complexes(signal, fs):
        a = onset + int(start_fraction * (offset - onset))
        b = onset + max(int(end_fraction * (offset - onset)), 1)
        segment = lead(signal, name)[a:b + 1]
        highs.append(segment.max())
        lows.append(segment.min())
    return float(np.median(highs)), float(np.median(lows))


def t_amplitude(signal, fs, name):
    """Signed T amplitude in one lead: the value at the T peak of the spatial magnitude.

    The T peak is searched from 200 ms after QRS onset (past the widest QRS, 175 ms), not from the detected
    offset: with discordant ST-T (LBBB) the delineated QRS offset can run into the T wave.
    """
    magnitude = _magnitude(signal)
    values = []
    for onset, _, _ in qrs_complexes(signal, fs):
        start = onset + int(0.2 * fs)
        search = magnitude[start:onset + int(0.6 * fs)]
        if not len(search):
            continue
        t_peak = start + int(np.argmax(search))
        values.append(lead(signal, name)[t_peak])
    return float(np.median(values))


def rr_ratio(signal, fs):
    peaks = [peak for _, peak, _ in qrs_complexes(signal, fs)]
    rr = np.diff(peaks)
    # max over min, not over the median: a 3:2 block alternates short and long intervals.
    return float(rr.max() / rr.min())


def sokolow_lyon_mv(signal, fs):
    _, low_v1 = qrs_part(signal, fs, "V1", 0, 1)
    high_v5, _ = qrs_part(signal, fs, "V5", 0, 1)
    high_v6, _ = qrs_part(signal, fs, "V6", 0, 1)
    return -low_v1 + max(high_v5, high_v6)


def after_qrs_onset(signal, fs, name, start_ms, end_ms):
    """Extremes of one lead between two times after each QRS onset: (median max, median min)."""
    highs, lows = [], []
    for onset, _, _ in qrs_complexes(signal, fs):
        segment = lead(signal, name)[onset + int(start_ms * fs / 1000):onset + int(end_ms * fs / 1000) + 1]
        highs.append(segment.max())
        lows.append(segment.min())
    return float(np.median(highs)), float(np.median(lows))
