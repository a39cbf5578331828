//! PNG output: the figure's SVG rasterised by resvg, text set in a system font.

use std::sync::{Arc, OnceLock};

use resvg::{tiny_skia, usvg};

use super::PlotError;

/// The largest side accepted (px): a bound on the pixmap's memory (4 bytes per pixel).
const MAX_SIDE: u32 = 8192;

/// Families preferred for the SVG's `sans-serif` text, in order; otherwise the first face found.
const PREFERRED: [&str; 6] = [
    "DejaVu Sans",
    "Liberation Sans",
    "Noto Sans",
    "Arial",
    "Helvetica",
    "FreeSans",
];

/// The system's fonts, loaded once per process.
#[derive(Debug)]
struct Fonts {
    db: Arc<usvg::fontdb::Database>,
    /// The family used for generic and unnamed text; `None` without any font.
    family: Option<String>,
}

fn fonts() -> &'static Fonts {
    static FONTS: OnceLock<Fonts> = OnceLock::new();
    FONTS.get_or_init(|| {
        let mut db = usvg::fontdb::Database::new();
        // fontdb scans /usr/share/fonts, /usr/local/share/fonts, ~/.fonts and
        // ~/.local/share/fonts (fontconfig's configuration is not read).
        db.load_system_fonts();
        let family = PREFERRED
            .iter()
            .find(|want| {
                db.faces()
                    .any(|f| f.families.iter().any(|(name, _)| name == *want))
            })
            .map(|f| (*f).to_owned())
            .or_else(|| {
                db.faces()
                    .find_map(|f| f.families.first().map(|(name, _)| name.clone()))
            });
        if let Some(family) = &family {
            db.set_sans_serif_family(family.clone());
            // usvg falls back to `serif` when a family is not found.
            db.set_serif_family(family.clone());
        }
        Fonts {
            db: Arc::new(db),
            family,
        }
    })
}

/// The number of font faces found on this system for the PNG's text. With none, [`png`] still
/// renders every shape, without text.
pub fn font_faces() -> usize {
    fonts().db.len()
}

/// Rasterises an SVG document (normally [`super::svg`]'s) at its own size, on white, and
/// encodes it as PNG.
pub fn png(svg: &str) -> Result<Vec<u8>, PlotError> {
    let fonts = fonts();
    let mut options = usvg::Options {
        fontdb: Arc::clone(&fonts.db),
        ..usvg::Options::default()
    };
    if let Some(family) = &fonts.family {
        options.font_family.clone_from(family);
    }
    let tree = usvg::Tree::from_str(svg, &options).map_err(|e| PlotError::Raster(e.to_string()))?;
    let size = tree.size().to_int_size();
    let (width, height) = (size.width(), size.height());
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(PlotError::Raster(format!(
            "{width}×{height} px is larger than {MAX_SIDE}×{MAX_SIDE}"
        )));
    }
    let mut pixmap = tiny_skia::Pixmap::new(width, height)
        .ok_or_else(|| PlotError::Raster(format!("cannot allocate {width}×{height} px")))?;
    pixmap.fill(tiny_skia::Color::WHITE);
    resvg::render(&tree, tiny_skia::Transform::default(), &mut pixmap.as_mut());
    pixmap
        .encode_png()
        .map_err(|e| PlotError::Raster(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

    /// Width and height from the IHDR chunk.
    fn dimensions(png: &[u8]) -> (u32, u32) {
        let be = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
        assert_eq!(&png[12..16], b"IHDR");
        (be(16), be(20))
    }

    #[test]
    fn renders_shapes_and_text() {
        let svg = r##"<svg xmlns="http://www.w3.org/2000/svg" width="120" height="40">
            <rect x="0" y="0" width="60" height="40" fill="#ff0000"/>
            <text x="62" y="25" font-family="sans-serif" font-size="14">Hi</text></svg>"##;
        let png = png(svg).unwrap();
        assert!(png.starts_with(PNG_SIGNATURE));
        assert_eq!(dimensions(&png), (120, 40));
    }

    #[test]
    fn bad_svg_and_huge_sizes_are_errors() {
        let err = png("<svg").unwrap_err();
        assert!(err.to_string().starts_with("rendering the PNG: "), "{err}");
        let huge = r#"<svg xmlns="http://www.w3.org/2000/svg" width="100000" height="10"/>"#;
        assert!(png(huge).unwrap_err().to_string().contains("larger than"));
    }
}
