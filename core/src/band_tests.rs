use proptest::prelude::*;

use super::*;

fn bands(low_at_most: i64, margin: i64) -> Bands {
    Bands::new(low_at_most, margin, "bands").expect("valid bands")
}

#[test]
fn a_figure_alone_is_out_of_stock_at_zero_low_up_to_the_boundary_then_in_stock() {
    let b = bands(5, 2);
    assert_eq!(b.of(0), Band::OutOfStock);
    assert_eq!(b.of(-3), Band::OutOfStock);
    assert_eq!(b.of(1), Band::Low);
    assert_eq!(b.of(5), Band::Low);
    assert_eq!(b.of(6), Band::InStock);
}

#[test]
fn a_band_is_entered_downwards_at_once_and_left_upwards_only_past_the_margin() {
    let b = bands(5, 2);
    assert_eq!(b.next(Band::InStock, 5), Band::Low);
    assert_eq!(b.next(Band::Low, 6), Band::Low);
    assert_eq!(b.next(Band::Low, 7), Band::Low);
    assert_eq!(b.next(Band::Low, 8), Band::InStock);
    assert_eq!(b.next(Band::InStock, 0), Band::OutOfStock);
    assert_eq!(b.next(Band::OutOfStock, 2), Band::OutOfStock);
    assert_eq!(b.next(Band::OutOfStock, 3), Band::Low);
    assert_eq!(b.next(Band::OutOfStock, 100), Band::InStock);
}

#[test]
fn a_figure_wobbling_around_a_boundary_crosses_once() {
    let b = bands(5, 2);
    let mut band = Band::InStock;
    let mut crossings = Vec::new();
    for figure in [9, 5, 6, 5, 7, 4, 6, 5, 7] {
        if let Some(crossing) = b.cross(band, figure) {
            crossings.push(crossing);
            band = crossing.to;
        }
    }
    assert_eq!(
        crossings,
        [Crossing {
            from: Band::InStock,
            to: Band::Low
        }]
    );
}

#[test]
fn a_restock_from_out_of_stock_is_back_in_stock() {
    let b = bands(5, 0);
    let restock = b.cross(Band::OutOfStock, 1).expect("a crossing");
    assert!(restock.back_in_stock());
    assert!(!b.cross(Band::Low, 9).expect("a crossing").back_in_stock());
    assert!(!b.cross(Band::Low, 0).expect("a crossing").back_in_stock());
}

#[test]
fn thresholds_out_of_range_name_their_fields() {
    let violations = Bands::new(-1, MAX_THRESHOLD + 1, "bands").expect_err("refused");
    let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
    assert_eq!(fields, ["bands.low_at_most", "bands.margin"]);
}

fn band() -> impl Strategy<Value = Band> {
    prop_oneof![Just(Band::OutOfStock), Just(Band::Low), Just(Band::InStock)]
}

proptest! {
    /// Outside the margin above a boundary, the band is the figure's own, whatever came before.
    #[test]
    fn outside_the_margins_the_band_is_the_figures_own(
        low in 0..50i64, margin in 0..20i64, current in band(), figure in -5..120i64,
    ) {
        let b = bands(low, margin);
        let in_margin = (1..=margin).contains(&figure) || (low < figure && figure <= low + margin);
        if !in_margin {
            prop_assert_eq!(b.next(current, figure), b.of(figure));
        }
    }

    /// The band never shows more than the figure does, and a figure held still keeps its band.
    #[test]
    fn the_band_never_exceeds_the_figures_own_and_is_stable(
        low in 0..50i64, margin in 0..20i64, current in band(), figure in -5..120i64,
    ) {
        let b = bands(low, margin);
        let next = b.next(current, figure);
        prop_assert!(next <= b.of(figure));
        prop_assert_eq!(b.next(next, figure), next);
    }

    /// No flapping: after a crossing, the opposite crossing of the same boundary needs the
    /// figure to have moved by more than the margin.
    #[test]
    fn opposite_crossings_are_more_than_the_margin_apart(
        low in 0..30i64, margin in 1..10i64, figures in prop::collection::vec(0..50i64, 1..60),
    ) {
        let b = bands(low, margin);
        let mut band = b.of(figures[0]);
        let mut last: Option<(Crossing, i64)> = None;
        for &figure in &figures[1..] {
            if let Some(crossing) = b.cross(band, figure) {
                if let Some((before, at)) = last {
                    if before.to == crossing.from && before.from == crossing.to {
                        prop_assert!((figure - at).abs() > margin, "{before:?} at {at}, {crossing:?} at {figure}");
                    }
                }
                last = Some((crossing, figure));
                band = crossing.to;
            }
        }
    }

    /// Every change of band is reported once: the crossings chain from the first band to the
    /// last, each starting where the one before ended.
    #[test]
    fn every_change_of_band_is_one_crossing(
        low in 0..30i64, margin in 0..10i64, figures in prop::collection::vec(-2..50i64, 1..60),
    ) {
        let b = bands(low, margin);
        let first = b.of(figures[0]);
        let (mut band, mut reported) = (first, first);
        for &figure in &figures[1..] {
            let next = b.next(band, figure);
            if let Some(crossing) = b.cross(band, figure) {
                prop_assert_eq!(crossing.from, reported);
                prop_assert_eq!(crossing.to, next);
                reported = crossing.to;
            }
            band = next;
        }
        prop_assert_eq!(reported, band);
    }
}
