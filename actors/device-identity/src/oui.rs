//! MAC OUI → manufacturer, from the IEEE registry list Debian ships in `ieee-data`
//! (`/usr/share/ieee-data/oui.txt`), loaded once at start. Without the package, MAC enrichment is
//! off and says so in the log and in each registration's enrichment. Randomized (locally
//! administered) MACs have no manufacturer. Pure parsing and lookup, table-tested.

use std::collections::HashMap;

/// Where Debian's `ieee-data` package installs the list.
pub const DEBIAN_OUI_FILE: &str = "/usr/share/ieee-data/oui.txt";

#[derive(Debug, Default)]
pub struct Oui {
    vendors: HashMap<[u8; 3], String>,
}

fn prefix(text: &str) -> Option<[u8; 3]> {
    let hex: String = text.chars().filter(|c| c.is_ascii_hexdigit()).take(6).collect();
    if hex.len() < 6 {
        return None;
    }
    let b = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
    Some([b(0)?, b(2)?, b(4)?])
}

impl Oui {
    /// Parses the `XX-XX-XX   (hex)\t\tVendor` lines of `oui.txt`.
    pub fn parse(text: &str) -> Oui {
        let vendors = text
            .lines()
            .filter_map(|line| {
                let (left, right) = line.split_once("(hex)")?;
                Some((prefix(left.trim())?, right.trim().to_owned()))
            })
            .filter(|(_, v)| !v.is_empty())
            .collect();
        Oui { vendors }
    }

    pub fn len(&self) -> usize {
        self.vendors.len()
    }

    /// The manufacturer of `mac`; `None` for unknown or locally administered addresses.
    pub fn lookup(&self, mac: &str) -> Option<&str> {
        let p = prefix(mac)?;
        if p[0] & 0x02 != 0 {
            return None; // locally administered (randomized) address
        }
        self.vendors.get(&p).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "OUI/MA-L\t\t\tOrganization\n\
        00-00-0C   (hex)\t\tCisco Systems, Inc\n\
        00000C     (base 16)\t\tCisco Systems, Inc\n\
        \t\t\t\t170 WEST TASMAN DRIVE\n\
        3C-22-FB   (hex)\t\tApple, Inc.\n";

    #[test]
    fn lookups() {
        let oui = Oui::parse(SAMPLE);
        assert_eq!(oui.len(), 2);
        // (mac, expected vendor)
        let cases = [
            ("00:00:0c:12:34:56", Some("Cisco Systems, Inc")),
            ("00-00-0C-12-34-56", Some("Cisco Systems, Inc")),
            ("3c22.fb00.0001", Some("Apple, Inc.")),
            ("02:00:0c:12:34:56", None),
            ("aa:bb:cc:dd:ee:ff", None),
            ("zz", None),
        ];
        for (mac, want) in cases {
            assert_eq!(oui.lookup(mac), want, "{mac}");
        }
    }
}
