// One visual language for every view (Okabe-Ito, safe for the common colour-vision deficiencies).
// Helpful (removing the point raises the test loss) is blue, harmful is vermillion, in every view;
// label agreement is a shape: filled = same label as the test point, hollow ring = different label.
export const HELPFUL = "#0072B2";
export const HARMFUL = "#D55E00";
export const NEUTRAL = "#8a8a8a";
export const SELECTED = "#000000";
export const IDENTITY = "#9a9a9a";
export const NEWTON = "#009E73";
export const WRONG = "#D55E00";
export const RIGHT = "#0072B2";

/** The colour of a predicted change: helpful, harmful or neither. */
export function changeColor(change) {
  return change > 0 ? HELPFUL : change < 0 ? HARMFUL : NEUTRAL;
}
